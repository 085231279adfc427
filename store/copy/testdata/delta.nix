# A closure for delta copy tests: a chain of four paths whose files are
# equal from one salt to another but for the store paths they name, as a
# mass rebuild leaves them: a big file naming its own path on every line,
# a script naming its dependency, a symlink into the dependency, a file
# equal in every build, and small files. tweak changes one file of the
# root only (a small update: the root is the only new path); cversion
# renames one path, as a version bump does; edit adds a line to the
# middle of every path's big file (a change that rewriting cannot make).
# Built with sandbox = false (the test daemon's setting).
{ salt ? "", tweak ? "", cversion ? "1.0", edit ? "" }:
let
  mk = name: dep: extra: derivation {
    inherit name salt extra edit;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    dep = if dep == null then "" else dep;
    args = [ "-c" ''
      set -e
      /bin/mkdir -p $out/bin $out/lib $out/share/empty
      /usr/bin/seq 1 60000 | /bin/sed "s|^|$out/lib $name |" > $out/share/self
      if [ -n "$edit" ]; then /bin/sed -i "30000a $edit" $out/share/self; fi
      /usr/bin/seq 1 40000 > $out/share/plain
      printf '#!/bin/sh\n# %s\nexec %s/bin/run "$@"\n' "$(/usr/bin/seq 1 30 | /usr/bin/tr '\n' ' ')" "$dep" > $out/bin/run
      /bin/chmod +x $out/bin/run
      if [ -n "$dep" ]; then /bin/ln -s $dep/share $out/lib/dep-share; fi
      echo "$name" > $out/share/name
      if [ -n "$extra" ]; then /usr/bin/seq 1 3000 | /bin/sed "s/^/$extra /" > $out/share/extra; fi
    '' ];
  };
  a = mk "deltatest-a" null "";
  b = mk "deltatest-b" a "";
  c = mk "deltatest-c-${cversion}" b "";
in mk "deltatest-root" c tweak
