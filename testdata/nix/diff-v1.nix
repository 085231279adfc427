# One version of a ~20-derivation graph for `nbuild graph --diff`.
# diff-v1.nix and diff-v2.nix differ in one line only: openssl's version
# (3.0.7 in v1, 3.0.8 in v2). That attribute is the root cause; everything
# depending on openssl (curl, git, python, nginx, ...) rebuilds because of
# it, while zlib, pcre, libxml2, ... stay the same derivations.
let
  opensslVersion = "3.0.7";

  builder = builtins.toFile "diff-builder.sh" ''
    for o in $outputs; do
      eval "p=\$$o"
      /bin/mkdir -p "$p"
      /bin/echo "$name" > "$p/name"
    done
  '';
  mk = { pname, version, deps ? [ ], outputs ? [ "out" ], extra ? { } }:
    derivation ({
      name = "${pname}-${version}";
      inherit pname version outputs;
      system = "x86_64-linux";
      builder = "/bin/sh";
      args = [ "-e" builder ];
      buildInputs = deps;
    } // extra);

  stdenv = mk { pname = "stdenv"; version = "1"; };
  zlib = mk { pname = "zlib"; version = "1.2.13"; outputs = [ "out" "dev" ]; deps = [ stdenv ]; };
  pcre = mk { pname = "pcre"; version = "8.45"; deps = [ stdenv ]; };
  libxml2 = mk { pname = "libxml2"; version = "2.10.3"; deps = [ stdenv zlib.dev ]; };
  perl = mk { pname = "perl"; version = "5.36.0"; deps = [ stdenv ]; };
  openssl = mk {
    pname = "openssl";
    version = opensslVersion;
    outputs = [ "out" "dev" ];
    deps = [ stdenv perl zlib.dev ];
    extra.configureFlags = "shared no-ssl3";
  };
  curl = mk { pname = "curl"; version = "7.88.1"; outputs = [ "out" "dev" ]; deps = [ stdenv openssl.dev zlib.dev ]; };
  libssh2 = mk { pname = "libssh2"; version = "1.10.0"; deps = [ stdenv openssl.dev ]; };
  expat = mk { pname = "expat"; version = "2.5.0"; deps = [ stdenv ]; };
  git = mk { pname = "git"; version = "2.39.2"; deps = [ stdenv curl.dev expat pcre perl ]; };
  python = mk { pname = "python3"; version = "3.10.10"; deps = [ stdenv openssl.dev zlib.dev expat libxml2 ]; };
  nginx = mk { pname = "nginx"; version = "1.22.1"; deps = [ stdenv openssl.dev pcre zlib.dev ]; };
  sqlite = mk { pname = "sqlite"; version = "3.41.0"; deps = [ stdenv zlib.dev ]; };
  docs = mk { pname = "manual"; version = "1"; deps = [ stdenv libxml2 python ]; };
  libgit2 = mk { pname = "libgit2"; version = "1.5.1"; deps = [ stdenv libssh2 openssl.dev pcre ]; };
  cargo = mk { pname = "cargo"; version = "1.67.1"; deps = [ stdenv libgit2 curl.dev sqlite ]; };
in
{
  inherit zlib openssl sqlite;
  website = mk { pname = "website"; version = "2023"; deps = [ nginx docs git ]; };
  devshell = mk { pname = "devshell"; version = "1"; deps = [ git python cargo sqlite ]; };
  tools = mk { pname = "tools"; version = "1"; deps = [ pcre libxml2 sqlite ]; };
}
