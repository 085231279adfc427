# A small graph of derivations that really build (sandbox = false, only
# /bin/sh and absolute coreutils paths), for build and scheduling tests.
#
#               app (root)                    other (aarch64-linux, unbuildable here)
#             /    |     \                       |
#        cli     gui      docs [preferLocalBuild] lib-a
#          \    /  \      /
#         lib-a   lib-b  (lib-b.dev)            big (big-parallel), fast (fast)
#             \   /                             hang on base; tests (fast) on app
#              base  (outputs out, dev)
#               |
#             seed
#
# Every builder writes each output with a file naming the derivation and
# the outputs of its inputs it read, so a build shows which inputs it saw.
# The "sleep" attribute makes a node take a little time (seconds), for
# scheduler tests that look at order, never at timings.
let
  script = builtins.toFile "plan-builder.sh" ''
    for o in $outputs; do
      eval "p=\$$o"
      /bin/mkdir -p "$p"
      /bin/echo "$name $o" > "$p/name"
      for i in $deps; do
        /bin/cat "$i/name" >> "$p/inputs"
      done
    done
    if [ -n "$sleep" ]; then /bin/sleep "$sleep"; fi
  '';
  mk = { name, deps ? [ ], outputs ? [ "out" ], features ? [ ], system ? "x86_64-linux", sleep ? "", extra ? { } }:
    derivation ({
      inherit name system outputs deps sleep;
      builder = "/bin/sh";
      args = [ "-e" script ];
    } // (if features == [ ] then { } else { requiredSystemFeatures = features; }) // extra);

  seed = mk { name = "plan-seed"; };
  base = mk { name = "plan-base"; outputs = [ "out" "dev" ]; deps = [ seed ]; };
  lib-a = mk { name = "plan-lib-a"; deps = [ base ]; sleep = "1"; };
  lib-b = mk { name = "plan-lib-b"; outputs = [ "out" "dev" ]; deps = [ base.dev base ]; };
  cli = mk { name = "plan-cli"; deps = [ lib-a ]; };
  gui = mk { name = "plan-gui"; deps = [ lib-a lib-b ]; sleep = "1"; };
  docs = mk { name = "plan-docs"; deps = [ lib-b.dev ]; extra = { preferLocalBuild = true; allowSubstitutes = false; }; };
  app = mk { name = "plan-app"; deps = [ cli gui docs ]; };
in
{
  inherit seed base lib-a lib-b cli gui docs app;
  big = mk { name = "plan-big"; deps = [ base ]; features = [ "big-parallel" ]; };
  fast = mk { name = "plan-fast"; deps = [ base ]; features = [ "fast" ]; };
  tests = mk { name = "plan-tests"; deps = [ app ]; features = [ "fast" ]; };
  other = mk { name = "plan-other"; system = "aarch64-linux"; deps = [ lib-a ]; };
}
