# A small NixOS-like system for `nbuild graph --diff` and --why, in two
# versions (explain-v1.nix, explain-v2.nix) that differ the way real
# updates do:
#   - libpng is bumped deep in the graph (its source, a fixed-output
#     "source" like many others, changes too), so cairo, gtk, plymouth...
#     rebuild because of it;
#   - coreutils' configureFlags, a long string, changes one word in the
#     middle (the text diff must show that word, not a cut);
#   - nginx's multi-line postInstall changes one line;
#   - v2 adds a derivation with no counterpart (perl-doc-tools) whose inputs
#     (the perl tarball, zlib) are in both closures: they must not count as
#     changed, nor as causes;
#   - the perl tarball is reached by both the native and the cross perl.
{ libpngVersion, coreutilsSelinux, nginxLogDir, extraTools }:
let
  system = "x86_64-linux";
  builder = builtins.toFile "explain-builder.sh" ''
    for o in $outputs; do
      eval "p=\$$o"
      /bin/mkdir -p "$p"
      /bin/echo "$name" > "$p/name"
    done
  '';
  # A tarball: fixed-output, never fetched (tests only instantiate).
  fetch = name: key: derivation {
    inherit name system;
    builder = "/bin/sh";
    args = [ "-c" "echo ${key} > $out" ];
    url = "https://example.org/${key}";
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = builtins.hashString "sha256" key;
  };
  mk = { pname, version, deps ? [ ], src ? null, outputs ? [ "out" ], extra ? { } }:
    derivation ({
      name = "${pname}-${version}";
      inherit pname version outputs system;
      builder = "/bin/sh";
      args = [ "-e" builder ];
      buildInputs = deps;
    } // (if src == null then { } else { inherit src; }) // extra);

  stdenv = mk { pname = "stdenv-linux"; version = "1"; };
  zlib = mk { pname = "zlib"; version = "1.2.13"; src = fetch "source" "zlib-1.2.13"; outputs = [ "out" "dev" ]; deps = [ stdenv ]; };
  libpng = mk { pname = "libpng"; version = libpngVersion; src = fetch "source" "libpng-${libpngVersion}"; outputs = [ "out" "dev" ]; deps = [ stdenv zlib.dev ]; };
  freetype = mk { pname = "freetype"; version = "2.13.0"; src = fetch "source" "freetype-2.13.0"; deps = [ stdenv libpng.dev zlib.dev ]; };
  fontconfig = mk { pname = "fontconfig"; version = "2.14.2"; deps = [ stdenv freetype ]; };
  cairo = mk { pname = "cairo"; version = "1.16.0"; deps = [ stdenv fontconfig libpng.dev ]; };
  gtk = mk { pname = "gtk+3"; version = "3.24.37"; deps = [ stdenv cairo ]; };
  plymouth = mk { pname = "plymouth"; version = "22.02.122"; deps = [ stdenv cairo ]; };
  perlSrc = fetch "perl-5.36.0.tar.xz" "perl-5.36.0";
  perl = mk { pname = "perl"; version = "5.36.0"; src = perlSrc; deps = [ stdenv zlib ]; };
  perlCross = mk { pname = "perl-aarch64-unknown-linux-gnu"; version = "5.36.0"; src = perlSrc; deps = [ stdenv perl ]; };
  coreutils = mk {
    pname = "coreutils";
    version = "9.1";
    src = fetch "source" "coreutils-9.1";
    deps = [ stdenv perl ];
    extra.configureFlags = "--with-packager=https://nixos.org --enable-single-binary=symlinks "
      + "--enable-install-program=hostname --enable-no-install-program=kill,uptime "
      + "--with-openssl=auto --enable-largefile --enable-acl --enable-xattr "
      + "--${if coreutilsSelinux then "enable" else "disable"}-libselinux "
      + "--without-libgmp --enable-threads=posix --disable-rpath --enable-nls "
      + "--with-included-regex --disable-assert --with-tty-group=tty";
  };
  nginx = mk {
    pname = "nginx";
    version = "1.22.1";
    deps = [ stdenv zlib ];
    extra.postInstall = ''
      mv $out/sbin $out/bin
      mkdir -p $out/share/doc
      cp README $out/share/doc/
      substituteInPlace $out/conf/nginx.conf \
        --replace /var/log/nginx ${nginxLogDir}
      ln -s $out/bin/nginx $out/bin/nginx-server
      rm -r $out/html
      echo done
    '';
  };
  docTools = mk { pname = "perl-doc-tools"; version = "1"; deps = [ stdenv perlSrc zlib ]; };
in
{
  inherit libpng coreutils;
  system = mk {
    pname = "nixos-system-box";
    version = "23.05";
    deps = [ gtk plymouth coreutils nginx perlCross ] ++ (if extraTools then [ docTools ] else [ ]);
  };
}
