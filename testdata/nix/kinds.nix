# Every derivation kind and encoding corner eval/drv must reproduce
# byte for byte (never built; instantiated by testdata/refresh.sh with
# ca-derivations and impure-derivations enabled).
#
#   ia-*           input-addressed: one and several outputs, several systems
#   fod-*          fixed-output: flat and recursive; md5, sha1, sha256, sha512;
#                  the hash given as hex, nix32, SRI and base64 (the .drv
#                  always holds hex)
#   fetchurl       system "builtin", builder "builtin:fetchurl"
#   ca-floating    __contentAddressed (outputs "out" and "dev")
#   deferred       input-addressed but depending on ca-floating: its output
#                  paths are not known statically
#   deferred-chain depends on deferred
#   impure         __impure
#   structured     __structuredAttrs: everything lives in the __json env var
#   escapes        builder, args and env with every escapable character,
#                  other control bytes, DEL and non-ASCII text
#   features       requiredSystemFeatures, preferLocalBuild, allowSubstitutes
#                  as plain env vars
#   consumer       selects several outputs of one input, a FOD and a
#                  builtins.toFile source
let
  sh = "/bin/sh";
  script = builtins.toFile "kinds-builder.sh" ''
    for o in $outputs; do eval "/bin/mkdir -p \$$o"; done
  '';

  mk = attrs: derivation ({
    system = "x86_64-linux";
    builder = sh;
    args = [ "-e" script ];
  } // attrs);

  # Control bytes come from JSON escapes: Nix strings cannot spell them.
  ctl = builtins.fromJSON ''"\u0001\u0002\u001b\u001f\u007f"'';
  tricky = "q\" b\\ n\n r\r t\t $ \${x} é 日本 🙂 " + ctl;

  fod = name: mode: algo: hash: mk {
    inherit name;
    url = "https://example.org/${name}";
    outputHashMode = mode;
    outputHashAlgo = algo;
    outputHash = hash;
  };
  sriFod = name: mode: hash: mk {
    inherit name;
    outputHashMode = mode;
    outputHash = hash;
  };
in
rec {
  ia-simple = mk { name = "ia-simple"; };

  ia-multi = mk {
    name = "ia-multi";
    system = "aarch64-linux";
    outputs = [ "out" "dev" "lib" "man" ];
  };

  ia-riscv = mk {
    name = "ia-riscv";
    system = "riscv64-linux";
    buildInputs = [ ia-simple ];
  };

  # hashString gives hex; the others are the same digests respelled.
  fod-flat-sha256-hex = fod "flat-sha256-hex" "flat" "sha256" (builtins.hashString "sha256" "a");
  fod-rec-sha256-nix32 = fod "rec-sha256-nix32" "recursive" "sha256" "118n0szl2l8ji9c00frjqjivcgk0gyalmx1vfifgxw0r7wpmm5bj";
  fod-flat-sha1-hex = fod "flat-sha1-hex" "flat" "sha1" (builtins.hashString "sha1" "b");
  fod-rec-sha1-nix32 = fod "rec-sha1-nix32" "recursive" "sha1" "7wlmrxwkfrhkhhcjlaj6j767rv67nfyp";
  fod-flat-md5-hex = fod "flat-md5-hex" "flat" "md5" (builtins.hashString "md5" "c");
  fod-rec-md5-nix32 = fod "rec-md5-nix32" "recursive" "md5" "447dhl9li1qy51d5hnpkzmz6zl";
  fod-flat-sha512-hex = fod "flat-sha512-hex" "flat" "sha512" (builtins.hashString "sha512" "d");
  fod-rec-sha512-sri = sriFod "rec-sha512-sri" "recursive"
    "sha512-87KDXJjaexAFppAUUGFFenYLGwUyqWcknZNjgG0nDEUu8FTB5k+pQcye9ufb36gMYTzf3e750skyRhO+hNOyhA==";
  fod-flat-sha256-sri = sriFod "flat-sha256-sri" "flat"
    "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
  fod-rec-sha256-sri = sriFod "rec-sha256-sri" "recursive"
    "sha256-cpVaLz8Z8P5cdDv0SpV/YD62o8QyOwBYihJRQb8GFoU=";
  fod-flat-sha1-base64 = fod "flat-sha1-base64" "flat" "sha1" "1zt7zM7HHGmkopJBOGF2k/dcKT8=";

  fetchurl = import <nix/fetchurl.nix> {
    url = "https://example.org/source.tar.gz";
    sha256 = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
  };

  ca-floating = mk {
    name = "ca-floating";
    __contentAddressed = true;
    outputHashMode = "recursive";
    outputHashAlgo = "sha256";
    outputs = [ "out" "dev" ];
    buildInputs = [ ia-simple ];
  };

  ca-floating-flat = mk {
    name = "ca-floating-flat";
    __contentAddressed = true;
    outputHashMode = "flat";
    outputHashAlgo = "sha512";
  };

  deferred = mk {
    name = "deferred";
    outputs = [ "out" "doc" ];
    buildInputs = [ ca-floating.dev ca-floating.out ia-simple ];
    ref = "${ca-floating.dev}/include";
  };

  deferred-chain = mk {
    name = "deferred-chain";
    buildInputs = [ deferred.doc ];
  };

  impure = mk {
    name = "impure";
    __impure = true;
    buildInputs = [ ia-simple ];
  };

  impure-consumer = mk {
    name = "impure-consumer";
    buildInputs = [ impure ];
  };

  structured = mk {
    name = "structured";
    system = "aarch64-linux";
    __structuredAttrs = true;
    outputs = [ "out" "bin" ];
    requiredSystemFeatures = [ "kvm" "big-parallel" ];
    preferLocalBuild = true;
    allowSubstitutes = false;
    nested = { list = [ 1 2.5 null true "x" ]; text = tricky; };
    deps = [ ia-multi.dev ];
  };

  escapes = derivation {
    name = "escapes";
    system = "x86_64-linux";
    builder = "/bin/sh${ctl}";
    args = [ "-c" tricky "" "\t" ];
    "weird key ${ctl}\t\"" = tricky;
    empty = "";
    unicode = "ünïcødé ✓";
  };

  features = mk {
    name = "features";
    system = "riscv64-linux";
    requiredSystemFeatures = [ "kvm" "nixos-test" "benchmark" ];
    preferLocalBuild = true;
    allowSubstitutes = false;
  };

  consumer = mk {
    name = "consumer";
    outputs = [ "out" "debug" ];
    buildInputs = [ ia-multi.dev ia-multi.lib ia-multi.out fod-rec-sha256-nix32 fetchurl ia-riscv ];
    src = fod-flat-sha256-hex;
    cfg = builtins.toFile "kinds-config.txt" "x=1\n";
  };
}
