# A pkgsCross-like closure (never built; used for graph and scheduling
# tests). Build tools and cross compilers run on x86_64-linux; target
# packages are aarch64-linux and riscv64-linux derivations with their own
# bootstrap. Sources are fixed-output "tarballs" and builtins.toFile files.
#
# Things tests rely on:
#   - sdk-aarch64 is an x86_64-linux closure, but glibc-aarch64 (an
#     aarch64-linux derivation) is in it only because gcc-aarch64-linux
#     keeps it as a runtime dependency (outputs "dev" and "out"): the
#     chain nbuild graph --why explains.
#   - vm-test requires the features kvm and nixos-test; the kernels
#     require big-parallel.
#   - the riscv64-linux branch is unbuildable without a riscv64 builder.
let
  build = "x86_64-linux";

  builderScript = builtins.toFile "cross-builder.sh" ''
    for o in $outputs; do
      eval "p=\$$o"
      /bin/mkdir -p "$p"
      /bin/echo "$name ($system)" > "$p/name"
    done
  '';
  setupHook = builtins.toFile "setup-hook.sh" ''
    export NIX_CROSS=1
  '';

  mk = { name, system ? build, deps ? [ ], outputs ? [ "out" ], features ? [ ], extra ? { } }:
    derivation ({
      inherit name system outputs;
      builder = "/bin/sh";
      args = [ "-e" builderScript ];
      buildInputs = deps;
    } // (if features == [ ] then { } else { requiredSystemFeatures = features; }) // extra);

  # A fixed-output "source tarball": only its hash matters to the graph.
  fetch = name: derivation {
    inherit name;
    system = build;
    builder = "/bin/sh";
    args = [ "-c" "echo offline; exit 1" ];
    url = "https://example.org/src/${name}";
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = builtins.hashString "sha256" name;
    preferLocalBuild = true;
  };

  src = {
    gcc = fetch "gcc-12.2.0.tar.xz";
    binutils = fetch "binutils-2.40.tar.bz2";
    glibc = fetch "glibc-2.37.tar.xz";
    linux = fetch "linux-6.1.tar.xz";
    openssl = fetch "openssl-3.0.8.tar.gz";
    zlib = fetch "zlib-1.2.13.tar.gz";
    hello = fetch "hello-2.12.1.tar.gz";
    busybox = fetch "busybox-1.36.0.tar.bz2";
    qemu = fetch "qemu-7.2.0.tar.xz";
  };

  # Native x86_64-linux toolchain.
  bootstrap-tools = mk { name = "bootstrap-tools"; deps = [ (fetch "bootstrap-tools-x86_64.tar.xz") ]; };
  stdenv-boot = mk { name = "stdenv-boot"; deps = [ bootstrap-tools setupHook ]; };
  binutils = mk { name = "binutils-2.40"; deps = [ stdenv-boot src.binutils ]; };
  gcc = mk { name = "gcc-12.2.0"; outputs = [ "out" "lib" ]; deps = [ stdenv-boot binutils src.gcc ]; };
  stdenv = mk { name = "stdenv-linux"; deps = [ stdenv-boot gcc gcc.lib binutils setupHook ]; };
  perl = mk { name = "perl-5.36.0"; deps = [ stdenv ]; };
  bison = mk { name = "bison-3.8.2"; deps = [ stdenv perl ]; };
  flex = mk { name = "flex-2.6.4"; deps = [ stdenv bison ]; };
  linux-headers = mk { name = "linux-headers-6.1"; deps = [ stdenv src.linux perl ]; };
  qemu = mk { name = "qemu-7.2.0"; deps = [ stdenv src.qemu perl ]; };

  # The aarch64-linux world: its own bootstrap, then target packages.
  bootstrap-tools-aarch64 = mk {
    name = "bootstrap-tools";
    system = "aarch64-linux";
    deps = [ (fetch "bootstrap-tools-aarch64.tar.xz") ];
  };
  stdenv-aarch64 = mk { name = "stdenv-linux"; system = "aarch64-linux"; deps = [ bootstrap-tools-aarch64 setupHook ]; };
  glibc-aarch64 = mk {
    name = "glibc-aarch64-unknown-linux-gnu-2.37";
    system = "aarch64-linux";
    outputs = [ "out" "bin" "dev" ];
    deps = [ stdenv-aarch64 src.glibc linux-headers ];
  };
  zlib-aarch64 = mk {
    name = "zlib-aarch64-unknown-linux-gnu-1.2.13";
    system = "aarch64-linux";
    outputs = [ "out" "dev" ];
    deps = [ stdenv-aarch64 src.zlib glibc-aarch64.dev ];
  };
  openssl-aarch64 = mk {
    name = "openssl-aarch64-unknown-linux-gnu-3.0.8";
    system = "aarch64-linux";
    outputs = [ "out" "dev" "man" ];
    deps = [
      stdenv-aarch64
      src.openssl
      zlib-aarch64.dev
      glibc-aarch64
      (builtins.toFile "openssl-cross.patch" "--- a/Configure\n+++ b/Configure\n")
    ];
  };
  hello-aarch64 = mk {
    name = "hello-aarch64-unknown-linux-gnu-2.12.1";
    system = "aarch64-linux";
    deps = [ stdenv-aarch64 src.hello glibc-aarch64 ];
  };
  curl-aarch64 = mk {
    name = "curl-aarch64-unknown-linux-gnu-7.88.1";
    system = "aarch64-linux";
    outputs = [ "out" "bin" "dev" ];
    deps = [ stdenv-aarch64 openssl-aarch64.dev openssl-aarch64 zlib-aarch64 (fetch "curl-7.88.1.tar.xz") ];
  };

  # x86_64-linux cross tools for aarch64. gcc keeps the target libc.
  binutils-aarch64 = mk { name = "aarch64-unknown-linux-gnu-binutils-2.40"; deps = [ stdenv src.binutils ]; };
  gcc-aarch64-stage1 = mk {
    name = "aarch64-unknown-linux-gnu-gcc-stage1-12.2.0";
    deps = [ stdenv binutils-aarch64 src.gcc linux-headers ];
  };
  gcc-aarch64-linux = mk {
    name = "aarch64-unknown-linux-gnu-gcc-12.2.0";
    deps = [ stdenv binutils-aarch64 gcc-aarch64-stage1 src.gcc glibc-aarch64.dev glibc-aarch64 ];
  };
  stdenv-aarch64-cross = mk {
    name = "stdenv-linux-aarch64-cross";
    deps = [ stdenv gcc-aarch64-linux binutils-aarch64 setupHook ];
  };
  linux-aarch64 = mk {
    name = "linux-aarch64-unknown-linux-gnu-6.1";
    outputs = [ "out" "dev" ];
    features = [ "big-parallel" ];
    deps = [ stdenv-aarch64-cross src.linux bison flex perl ];
  };

  # The riscv64-linux branch.
  bootstrap-tools-riscv64 = mk {
    name = "bootstrap-tools";
    system = "riscv64-linux";
    deps = [ (fetch "bootstrap-tools-riscv64.tar.xz") ];
  };
  stdenv-riscv64 = mk { name = "stdenv-linux"; system = "riscv64-linux"; deps = [ bootstrap-tools-riscv64 setupHook ]; };
  glibc-riscv64 = mk {
    name = "glibc-riscv64-unknown-linux-gnu-2.37";
    system = "riscv64-linux";
    outputs = [ "out" "dev" ];
    deps = [ stdenv-riscv64 src.glibc linux-headers ];
  };
  busybox-riscv64 = mk {
    name = "busybox-riscv64-unknown-linux-gnu-1.36.0";
    system = "riscv64-linux";
    deps = [ stdenv-riscv64 src.busybox glibc-riscv64.dev ];
  };
  binutils-riscv64 = mk { name = "riscv64-unknown-linux-gnu-binutils-2.40"; deps = [ stdenv src.binutils ]; };
  gcc-riscv64-linux = mk {
    name = "riscv64-unknown-linux-gnu-gcc-12.2.0";
    deps = [ stdenv binutils-riscv64 src.gcc glibc-riscv64.dev glibc-riscv64 ];
  };
  stdenv-riscv64-cross = mk {
    name = "stdenv-linux-riscv64-cross";
    deps = [ stdenv gcc-riscv64-linux binutils-riscv64 setupHook ];
  };
  linux-riscv64 = mk {
    name = "linux-riscv64-unknown-linux-gnu-6.1";
    features = [ "big-parallel" ];
    deps = [ stdenv-riscv64-cross src.linux bison flex ];
  };

  # Top levels.
  system-aarch64 = mk {
    name = "nixos-system-pi-23.05";
    system = "aarch64-linux";
    deps = [ hello-aarch64 curl-aarch64.bin openssl-aarch64 glibc-aarch64.bin linux-aarch64 ];
    extra = { preferLocalBuild = true; allowSubstitutes = false; };
  };
  system-riscv64 = mk {
    name = "nixos-system-star64-23.05";
    system = "riscv64-linux";
    deps = [ busybox-riscv64 glibc-riscv64 linux-riscv64 ];
    extra = { preferLocalBuild = true; allowSubstitutes = false; };
  };
in
{
  inherit hello-aarch64 system-aarch64 system-riscv64 glibc-aarch64;
  sdk-aarch64 = mk {
    name = "cross-sdk-aarch64";
    deps = [ stdenv-aarch64-cross gcc-aarch64-linux binutils-aarch64 qemu ];
  };
  vm-test = mk {
    name = "vm-test-run-pi-boot";
    features = [ "kvm" "nixos-test" ];
    deps = [ system-aarch64 qemu ];
  };
}
