# The copy benchmark's closure: ~446 MB of NAR in 101 paths, built by real
# Nix from files this machine has (sandbox = false), so it mixes what
# system closures hold: a big tree of many small files (Go's source), big
# binaries and archives (Go's pkg and bin, shared libraries) and 96 small
# paths (documentation and generated text), chained by references.
# A new salt is a mass rebuild (every path new, files equal but for the
# store paths they name); tweak changes one file of bench-go-bin (a small
# update: that path and the root are new).
{ salt ? "", tweak ? "" }:
let
  sh = "/bin/sh";
  mk = name: script: refs: derivation {
    inherit name salt refs;
    system = builtins.currentSystem;
    builder = sh;
    args = [ "-c" "set -e; /bin/mkdir -p $out; echo $refs > $out/refs; ${script}" ];
  };
  goSrc = mk "bench-go-src" "/bin/cp -r /usr/local/go/src $out/src" [ ];
  goPkg = mk "bench-go-pkg" "/bin/cp -r /usr/local/go/pkg $out/pkg" [ goSrc ];
  goBin = mk "bench-go-bin" ("/bin/cp -r /usr/local/go/bin $out/bin"
    + (if tweak == "" then "" else "; echo ${tweak} >> $out/bin/gofmt")) [ ];
  libs = mk "bench-libs" ''
    /bin/mkdir $out/lib
    for f in /usr/lib/x86_64-linux-gnu/lib[a-g]*.so*; do
      [ -f "$f" ] && /bin/cp -L "$f" $out/lib/ || true
    done
  '' [ ];
  docs = builtins.genList (i: i) 96;
  docNames = builtins.attrNames (builtins.readDir /usr/share/doc);
  small = builtins.foldl' (acc: i:
    let
      n = builtins.elemAt docNames (builtins.mul i 3);
      p = mk "bench-small-${toString i}" ''
        /bin/cp -rL /usr/share/doc/${n} $out/doc || /bin/mkdir -p $out/doc
        /usr/bin/seq ${toString (i * 1000)} ${toString (i * 1000 + 20000)} > $out/data
      '' (if acc == [ ] then [ libs ] else [ (builtins.head acc) ]);
    in [ p ] ++ acc) [ ] docs;
in mk "bench-copy-root" "" ([ goPkg goBin libs ] ++ small)
