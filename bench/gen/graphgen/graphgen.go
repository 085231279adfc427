// Package graphgen writes large synthetic derivation graphs shaped like
// nixpkgs closures, as a Nix expression, and instantiates them with real
// nix-instantiate into a chroot store, so benchmarks read .drv files
// written by real Nix.
//
// Shape (per system "world": x86_64-linux most, aarch64-linux, a little
// riscv64-linux): a bootstrap chain from a fixed-output tarball, a dozen
// core packages, and a stdenv hub nearly every package depends on; then
// packages in creation order, each with a fixed-output source (sometimes
// patches), and inputs picked by preferential attachment, so a few
// libraries get most of the fan-in as zlib and openssl do. Some nodes are
// huge (environments with hundreds of inputs, multi-kilobyte scripts);
// cross worlds use x86_64-linux build tools (pkgsCross's buildPackages);
// a few nodes require big-parallel, or kvm and nixos-test; a few
// sources are builtin:fetchurl. One x86_64-linux root depends on every
// node nothing else depends on, so its closure is the whole graph.
//
// The same Params always give the same expression and so the same .drv
// files. Generate makes the graph (a Graph) and WriteNix writes its
// expression, with no tool needed; Instantiate has nix-instantiate write
// the .drv files into a chroot store directory and returns them as a
// Corpus, once: a directory that already holds the graph of the same
// Params is reused. Benchmarks keep their corpora under CacheDir.
package graphgen

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Params describe a graph.
type Params struct {
	// N is the number of derivations to generate (at least 100).
	N int
	// Seed varies the graph; 0 is a fine default.
	Seed uint64
}

type ref struct {
	node   int
	output string // "" for the default
}

type node struct {
	attr     string // Nix variable name
	name     string // pname
	version  string
	system   string
	fod      bool
	builtin  bool // builtin:fetchurl
	outputs  []string
	src      int // node index of the source, -1 for none
	patches  []int
	native   []ref
	inputs   []ref
	features []string
	script   string
	flags    string
	local    bool // preferLocalBuild, allowSubstitutes = false
}

type world struct {
	system string
	suffix string // cross name suffix, e.g. "-aarch64-unknown-linux-gnu"
	share  float64
	stdenv int
	pool   []int // package indices, repeated by popularity
	pkgs   []int
}

type generator struct {
	rng   *rand.Rand
	nodes []node
	names map[string]int
	// fetcher is what fixed-output sources are built with: nothing (then
	// they are builtin:fetchurl) until the x86_64 bootstrap tools exist,
	// then those, then stdenv and curl (nixpkgs' fetchurl), a hub.
	fetcher []ref
}

var words = strings.Fields(`zlib ssl curl xml yaml json glib gtk qt pango cairo harf font expat pcre
	sqlite lz bz xz zstd gmp mpfr isl ffi png jpeg tiff webp gif sdl alsa pulse pipe wayland xcb
	drm mesa vulkan llvm clang rust go python perl ruby lua node java boost icu nettle gnutls
	krb ldap pam audit systemd udev dbus polkit avahi cups sane usb pci acl attr cap seccomp
	uring event uv ev nghttp brotli idn psl unistring readline ncurses editline tcl tk gdbm db`)

var verbs = strings.Fields(`configure make install check patch substitute wrap strip link copy
	move remove touch chmod sed grep find sort export cd echo test mkdir ln cat install_name`)

func (g *generator) word() string { return words[g.rng.IntN(len(words))] }

// unique returns name, or name with a number, never returned before.
func (g *generator) unique(name string) string {
	n := g.names[name]
	g.names[name] = n + 1
	if n == 0 {
		return name
	}
	return name + strconv.Itoa(n+1)
}

func (g *generator) version() string {
	return fmt.Sprintf("%d.%d.%d", g.rng.IntN(12), g.rng.IntN(40), g.rng.IntN(20))
}

// script makes a shell-like phase of about size bytes.
func (g *generator) script(size int) string {
	var b strings.Builder
	for b.Len() < size {
		fmt.Fprintf(&b, "%s %s-%s --prefix=$out/%s", verbs[g.rng.IntN(len(verbs))], g.word(), g.word(), g.word())
		if g.rng.IntN(4) == 0 {
			b.WriteString(` "${NIX_CFLAGS_COMPILE:-}" \"quoted\"`)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (g *generator) add(n node) int {
	n.attr = "n" + strconv.Itoa(len(g.nodes))
	g.nodes = append(g.nodes, n)
	return len(g.nodes) - 1
}

// fetch adds a fixed-output source.
func (g *generator) fetch(name string) int {
	b := g.fetcher == nil || g.rng.IntN(100) == 0
	n := node{name: g.unique(name), fod: true, builtin: b, system: "x86_64-linux", src: -1}
	if !b {
		n.native = g.fetcher
	}
	return g.add(n)
}

// size draws a log-normal-ish script size: mostly a few hundred bytes, a
// long tail to tens of kilobytes.
func (g *generator) size() int {
	s := 200 * (1 + g.rng.ExpFloat64()*4)
	if g.rng.IntN(100) == 0 {
		s *= 40
	}
	return int(s)
}

func (g *generator) pkg(w *world, name string, inputs []ref, native []ref) int {
	n := node{
		name:    g.unique(name + w.suffix),
		version: g.version(),
		system:  w.system,
		outputs: []string{"out"},
		inputs:  inputs,
		native:  native,
		script:  g.script(g.size()),
		flags:   fmt.Sprintf("--enable-%s --with-%s=%s", g.word(), g.word(), g.word()),
	}
	switch r := g.rng.IntN(10); {
	case r < 2:
		n.outputs = []string{"dev", "out"}
	case r < 3:
		n.outputs = []string{"bin", "dev", "lib", "out"}
	}
	n.src = -1
	if g.rng.IntN(4) > 0 {
		n.src = g.fetch(name + "-" + n.version + ".tar.gz")
	}
	if g.rng.IntN(10) == 0 {
		for range 1 + g.rng.IntN(3) {
			n.patches = append(n.patches, g.fetch(name+"-"+g.word()+".patch"))
		}
	}
	return g.add(n)
}

// pick chooses an input by preferential attachment and an output of it.
func (g *generator) pick(w *world) ref {
	i := w.pool[g.rng.IntN(len(w.pool))]
	w.pool = append(w.pool, i)
	outs := g.nodes[i].outputs
	if len(outs) > 1 && g.rng.IntN(3) > 0 {
		return ref{node: i, output: outs[0]} // "bin" or "dev", as most users do
	}
	return ref{node: i}
}

func (g *generator) bootstrap(w *world, cross *world) {
	tarball := g.fetch("bootstrap-tools" + w.suffix + ".tar.xz")
	prev := g.add(node{name: g.unique("bootstrap-tools" + w.suffix), version: "1", system: w.system,
		outputs: []string{"out"}, src: tarball, script: g.script(400)})
	if cross == nil {
		g.fetcher = []ref{{node: prev}}
	}
	var core []ref
	for stage := 1; stage <= 4; stage++ {
		inputs := []ref{{node: prev}}
		if stage == 4 {
			inputs = append(inputs, core...)
		}
		prev = g.add(node{name: g.unique(fmt.Sprintf("bootstrap-stage%d%s", stage, w.suffix)), version: "1",
			system: w.system, outputs: []string{"out"}, src: -1, inputs: inputs, script: g.script(600)})
		if stage == 2 {
			for _, name := range []string{"binutils", "gcc", "glibc", "coreutils", "bash", "gnumake",
				"gnused", "gnugrep", "gawk", "findutils", "diffutils", "patchelf"} {
				c := g.pkg(w, name, []ref{{node: prev}}, nil)
				core = append(core, ref{node: c})
			}
		}
	}
	inputs := append([]ref{{node: prev}}, core...)
	var native []ref
	if cross != nil {
		// pkgsCross: the target's stdenv carries a cross compiler that runs
		// on the build machine.
		gcc := g.pkg(cross, "gcc-cross"+w.suffix, []ref{{node: cross.stdenv}}, nil)
		native = append(native, ref{node: gcc})
	}
	w.stdenv = g.add(node{name: g.unique("stdenv-linux" + w.suffix), version: "1", system: w.system,
		outputs: []string{"out"}, src: -1, inputs: inputs, native: native, script: g.script(3000)})
	w.pool = []int{w.stdenv}
	if cross == nil {
		curl := g.pkg(w, "curl", []ref{{node: w.stdenv}}, nil)
		g.fetcher = []ref{{node: w.stdenv}, {node: curl}}
		w.pool = append(w.pool, curl)
	}
}

// Generate builds the graph for p.
func Generate(p Params) *Graph {
	g := &generator{rng: rand.New(rand.NewPCG(p.Seed, 0x6e627569)), names: make(map[string]int)}
	x86 := &world{system: "x86_64-linux", share: 0.72}
	arm := &world{system: "aarch64-linux", suffix: "-aarch64-unknown-linux-gnu", share: 0.22}
	rv := &world{system: "riscv64-linux", suffix: "-riscv64-unknown-linux-gnu", share: 0.06}
	g.bootstrap(x86, nil)
	g.bootstrap(arm, x86)
	g.bootstrap(rv, x86)
	for len(g.nodes) < p.N-1 {
		r := g.rng.Float64()
		w := x86
		if r > x86.share {
			w = arm
			if r > x86.share+arm.share {
				w = rv
			}
		}
		inputs := []ref{{node: w.stdenv}}
		deps := 1 + int(g.rng.ExpFloat64()*3)
		if len(w.pkgs) > 0 && g.rng.IntN(400) == 0 {
			deps = 50 + g.rng.IntN(250) // python-env, texlive, system-path
		}
		for range min(deps, len(w.pool)) {
			inputs = append(inputs, g.pick(w))
		}
		inputs = dedup(inputs)
		var native []ref
		if w != x86 && len(x86.pkgs) > 0 && g.rng.IntN(3) == 0 {
			native = append(native, ref{node: x86.pkgs[g.rng.IntN(len(x86.pkgs))]})
		}
		i := g.pkg(w, g.word()+g.word(), inputs, native)
		switch r := g.rng.IntN(100); {
		case r < 2:
			g.nodes[i].features = []string{"big-parallel"}
		case r < 3 && len(w.pkgs) > 0:
			g.nodes[i].features = []string{"kvm", "nixos-test"}
			g.nodes[i].name = g.unique("nixos-test-" + g.word())
		case r < 5:
			g.nodes[i].local = true
		}
		w.pkgs = append(w.pkgs, i)
		w.pool = append(w.pool, i)
	}
	// The root: everything nothing depends on.
	used := make([]bool, len(g.nodes))
	for _, n := range g.nodes {
		for _, r := range append(n.inputs, n.native...) {
			used[r.node] = true
		}
		if n.src >= 0 {
			used[n.src] = true
		}
		for _, s := range n.patches {
			used[s] = true
		}
	}
	var top []ref
	for i, u := range used {
		if !u {
			top = append(top, ref{node: i})
		}
	}
	root := g.add(node{name: "toplevel", version: "1", system: "x86_64-linux", outputs: []string{"out"},
		src: -1, inputs: top, script: g.script(200), local: true})
	return &Graph{g: g, root: root}
}

func dedup(rs []ref) []ref {
	seen := make(map[int]bool, len(rs))
	out := rs[:0]
	for _, r := range rs {
		if !seen[r.node] {
			seen[r.node] = true
			out = append(out, r)
		}
	}
	return out
}

// Graph is a generated graph, ready to be written as Nix.
type Graph struct {
	g    *generator
	root int
}

// Len returns the number of derivations.
func (gr *Graph) Len() int { return len(gr.g.nodes) }

func nixString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "$", `\$`)
	return `"` + r.Replace(s) + `"`
}

func (gr *Graph) refs(rs []ref) string {
	var b strings.Builder
	b.WriteString("[")
	for _, r := range rs {
		b.WriteString(" ")
		b.WriteString(gr.g.nodes[r.node].attr)
		if r.output != "" {
			b.WriteString(".")
			b.WriteString(r.output)
		}
	}
	b.WriteString(" ]")
	return b.String()
}

// WriteNix writes the graph as a Nix expression: an attribute set whose
// one attribute "root" is the root derivation.
func (gr *Graph) WriteNix(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `# Generated by nbuild's bench/gen: %d derivations. Do not edit.
let
  builder = builtins.toFile "generic-builder.sh" ''
    for o in $outputs; do
      eval "p=\$$o"
      /bin/mkdir -p "$p"
    done
  '';
  setup = builtins.toFile "setup.sh" "export NIX_BENCH=1";
  mirrors = builtins.toFile "mirrors-list" "bench_mirror=https://mirror.example.org/ https://ftp.example.org/\n";
  fetch = name: hash: deps: derivation {
    inherit name;
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-e" builder ];
    urls = "mirror://bench/${name}";
    nativeBuildInputs = deps;
    mirrorsFile = mirrors;
    showURLs = "";
    postFetch = "";
    downloadToTemp = "";
    executable = "";
    impureEnvVars = "http_proxy https_proxy ftp_proxy all_proxy no_proxy NIX_CURL_FLAGS NIX_HASHED_MIRRORS NIX_CONNECT_TIMEOUT NIX_MIRRORS_bench";
    SSL_CERT_FILE = "/no-cert-file.crt";
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = hash;
    preferLocalBuild = true;
  };
  fetchBuiltin = name: hash: derivation {
    inherit name;
    system = "builtin";
    builder = "builtin:fetchurl";
    url = "https://bench.example.org/${name}";
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = hash;
    executable = false;
    unpack = false;
  };
  mk = { pname, version, system, outputs, src ? null, patches ? [ ], nativeBuildInputs ? [ ], buildInputs ? [ ],
         features ? [ ], script, flags ? "", local ? false }:
    derivation ({
      name = "${pname}-${version}";
      inherit pname version system outputs patches nativeBuildInputs buildInputs;
      builder = "/bin/sh";
      args = [ "-e" builder ];
      stdenv = setup;
      buildPhase = script;
      configureFlags = flags;
      strictDeps = "1";
      doCheck = "";
      doInstallCheck = "";
      enableParallelBuilding = "1";
      depsBuildBuild = "";
      depsBuildTarget = "";
      depsHostHost = "";
      depsTargetTarget = "";
      propagatedBuildInputs = "";
      propagatedNativeBuildInputs = "";
      NIX_HARDENING_ENABLE = "bindnow format fortify fortify3 pic relro stackprotector strictoverflow";
      cmakeFlags = "";
      mesonFlags = "";
    } // (if src == null then { } else { inherit src; })
      // (if features == [ ] then { } else { requiredSystemFeatures = features; })
      // (if local then { preferLocalBuild = true; allowSubstitutes = false; } else { }));
`, len(gr.g.nodes))
	for _, n := range gr.g.nodes {
		if n.fod {
			sum := sha256.Sum256([]byte(n.name))
			if n.builtin {
				fmt.Fprintf(bw, "  %s = fetchBuiltin %s %q;\n", n.attr, nixString(n.name), hex.EncodeToString(sum[:]))
			} else {
				fmt.Fprintf(bw, "  %s = fetch %s %q %s;\n", n.attr, nixString(n.name), hex.EncodeToString(sum[:]), gr.refs(n.native))
			}
			continue
		}
		fmt.Fprintf(bw, "  %s = mk { pname = %s; version = %q; system = %q; outputs = [", n.attr, nixString(n.name), n.version, n.system)
		for _, o := range n.outputs {
			fmt.Fprintf(bw, " %q", o)
		}
		bw.WriteString(" ];")
		if n.src >= 0 {
			fmt.Fprintf(bw, " src = %s;", gr.g.nodes[n.src].attr)
		}
		if len(n.patches) > 0 {
			bw.WriteString(" patches = [")
			for _, p := range n.patches {
				bw.WriteString(" " + gr.g.nodes[p].attr)
			}
			bw.WriteString(" ];")
		}
		if len(n.native) > 0 {
			fmt.Fprintf(bw, " nativeBuildInputs = %s;", gr.refs(n.native))
		}
		if len(n.inputs) > 0 {
			fmt.Fprintf(bw, " buildInputs = %s;", gr.refs(n.inputs))
		}
		if len(n.features) > 0 {
			bw.WriteString(" features = [")
			for _, f := range n.features {
				fmt.Fprintf(bw, " %q", f)
			}
			bw.WriteString(" ];")
		}
		if n.local {
			bw.WriteString(" local = true;")
		}
		fmt.Fprintf(bw, " flags = %s; script = %s; };\n", nixString(n.flags), nixString(n.script))
	}
	fmt.Fprintf(bw, "in\n{\n  root = %s;\n}\n", gr.g.nodes[gr.root].attr)
	return bw.Flush()
}

// Corpus is an instantiated graph in a chroot store.
type Corpus struct {
	Dir  string // chroot store root: files under Dir/nix/store
	Root string // the root .drv path
	// Drvs is the number of .drv files and DrvBytes their total size.
	Drvs     int
	DrvBytes int64
}

// Instantiate writes dir/graph.nix and runs nix-instantiate --store dir on
// it, unless dir already holds the instantiated graph of the same Params
// (dir/root.txt records them). Without nix-instantiate on PATH (and no
// graph cached) the error wraps exec.ErrNotFound.
func Instantiate(ctx context.Context, dir string, p Params) (*Corpus, error) {
	if root, ok := CachedRoot(dir, p); ok {
		return corpus(dir, root)
	}
	stamp := filepath.Join(dir, "root.txt")
	want := stampLine(p)
	if p.N < 100 {
		return nil, fmt.Errorf("graphgen: N=%d: need at least 100 derivations", p.N)
	}
	nixInstantiate, err := exec.LookPath("nix-instantiate")
	if err != nil {
		return nil, fmt.Errorf("graphgen: instantiating needs Nix: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	gr := Generate(p)
	expr := filepath.Join(dir, "graph.nix")
	f, err := os.Create(expr)
	if err != nil {
		return nil, err
	}
	if err := gr.WriteNix(f); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, nixInstantiate, "--store", dir, expr, "-A", "root")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("graphgen: nix-instantiate: %v: %s", err, stderr.String())
	}
	root := strings.TrimSpace(string(out))
	if err := os.WriteFile(stamp, []byte(want+" "+root+"\n"), 0o644); err != nil {
		return nil, err
	}
	return corpus(dir, root)
}

func stampLine(p Params) string { return fmt.Sprintf("n=%d seed=%d", p.N, p.Seed) }

// CachedRoot returns the root .drv path of the graph of p already
// instantiated in dir, without looking at the store.
func CachedRoot(dir string, p Params) (string, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "root.txt"))
	if err != nil {
		return "", false
	}
	f := strings.Fields(string(b))
	if len(f) != 3 || f[0]+" "+f[1] != stampLine(p) {
		return "", false
	}
	return f[2], true
}

func corpus(dir, root string) (*Corpus, error) {
	c := &Corpus{Dir: dir, Root: root}
	entries, err := os.ReadDir(filepath.Join(dir, "nix", "store"))
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".drv") {
			fi, err := e.Info()
			if err != nil {
				return nil, err
			}
			c.Drvs++
			c.DrvBytes += fi.Size()
		}
	}
	return c, nil
}

// CacheDir returns where benchmarks keep generated corpora:
// $XDG_CACHE_HOME/nbuild-bench, else ~/.cache/nbuild-bench, else
// /tmp/nbuild-bench.
func CacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "nbuild-bench")
	}
	return filepath.Join(os.TempDir(), "nbuild-bench")
}
