# A small closure for copy tests: a chain of five paths, each referencing
# the one before, with every NAR entry kind and about 1.5 MB of
# compressible data each, so a copy cut part-way leaves some paths complete;
# the last also holds 12 MiB of random bytes, which do not compress.
# Built with sandbox = false (the test daemon's setting): builders are
# /bin/sh scripts with absolute tool paths.
{ salt ? "" }:
let
  mk = name: dep: noise: derivation {
    inherit name salt noise;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    dep = if dep == null then "" else dep;
    args = [ "-c" ''
      set -e
      /bin/mkdir -p $out/bin $out/share/empty $out/share/doc
      echo "$name $salt" > $out/share/doc/README
      echo "$dep" > $out/share/doc/dep
      printf '#!/bin/sh\necho %s\n' "$name" > $out/bin/run
      /bin/chmod +x $out/bin/run
      /bin/ln -s ../share/doc/README $out/bin/readme
      : > $out/share/empty-file
      /usr/bin/seq 1 200000 | /bin/sed "s/^/$name line /" > $out/share/data
      if [ -n "$noise" ]; then /usr/bin/head -c 12582912 /dev/urandom > $out/share/noise; fi
    '' ];
  };
  a = mk "copytest-a" null "";
  b = mk "copytest-b" a "";
  c = mk "copytest-c" b "";
  d = mk "copytest-d" c "";
in mk "copytest-e" d "1"
