package graph_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/storetest"
)

const testdata = "../../testdata"

var storeRoot = filepath.Join(testdata, "store")

// fixture is one attribute of a testdata/nix file.
type fixture struct {
	file, attr string
	drv        store.Path
}

func fixtures(t testing.TB) []fixture {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testdata, "roots", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/roots/*.txt (run testdata/refresh.sh): %v", err)
	}
	var fs []fixture
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(data)) {
			attr, p, ok := strings.Cut(strings.TrimSpace(line), " ")
			if !ok {
				t.Fatalf("%s: bad line %q", f, line)
			}
			fs = append(fs, fixture{strings.TrimSuffix(filepath.Base(f), ".txt"), attr, store.MustParsePath(p)})
		}
	}
	return fs
}

func load(t *testing.T, root string, roots []store.Path, opts graph.Options) *graph.Graph {
	t.Helper()
	g, err := graph.Load(context.Background(), root, roots, opts)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, g)
	return g
}

// checkInvariants checks what every Graph promises, whatever its source.
func checkInvariants(t testing.TB, g *graph.Graph) {
	t.Helper()
	seen := make(map[store.Path]bool)
	nDependents := 0
	for i := range g.Len() {
		id := graph.NodeID(i)
		n := g.Node(id)
		if seen[n.Path] {
			t.Fatalf("%s twice", n.Path)
		}
		seen[n.Path] = true
		if got, ok := g.Lookup(n.Path); !ok || got != id {
			t.Errorf("Lookup(%s) = %d, %v; want %d", n.Path, got, ok, id)
		}
		depth := 0
		for _, e := range n.Inputs {
			if e.To >= id {
				t.Errorf("%s (%d) has input %s (%d): not a topological order", n.Path, id, g.Node(e.To).Path, e.To)
			}
			if !slices.Contains(g.Dependents(e.To), id) {
				t.Errorf("%s missing from Dependents(%s)", n.Path, g.Node(e.To).Path)
			}
			depth = max(depth, g.Depth(e.To))
		}
		if g.Depth(id) != depth+1 {
			t.Errorf("Depth(%s) = %d, want %d", n.Path, g.Depth(id), depth+1)
		}
		nDependents += len(g.Dependents(id))
		if !slices.IsSorted(g.Dependents(id)) {
			t.Errorf("Dependents(%s) not sorted", n.Path)
		}
	}
	nEdges := 0
	for i := range g.Len() {
		nEdges += len(g.Node(graph.NodeID(i)).Inputs)
	}
	if nEdges != nDependents {
		t.Errorf("%d edges but %d dependents", nEdges, nDependents)
	}
	inViews := 0
	for _, v := range g.BySystem() {
		inSets := 0
		for _, fs := range v.ByFeatures {
			for _, id := range fs.Nodes {
				n := g.Node(id)
				if n.System != v.System || !slices.Equal(n.RequiredFeatures, fs.Features) {
					t.Errorf("%s (%s %v) in view %s %v", n.Path, n.System, n.RequiredFeatures, v.System, fs.Features)
				}
			}
			inSets += len(fs.Nodes)
		}
		if inSets != len(v.Nodes) {
			t.Errorf("system %s: %d nodes, %d in feature sets", v.System, len(v.Nodes), inSets)
		}
		inViews += len(v.Nodes)
	}
	if inViews != g.Len() {
		t.Errorf("%d nodes, %d in system views", g.Len(), inViews)
	}
	for _, fv := range g.ByFeature() {
		for _, id := range fv.Nodes {
			if !slices.Contains(g.Node(id).RequiredFeatures, fv.Feature) {
				t.Errorf("%s in feature view %s", g.Node(id).Path, fv.Feature)
			}
		}
	}
}

// showDerivation is one entry of `nix show-derivation -r` JSON.
type showDerivation struct {
	Outputs map[string]struct {
		Path string `json:"path"`
	} `json:"outputs"`
	InputSrcs []string            `json:"inputSrcs"`
	InputDrvs map[string][]string `json:"inputDrvs"`
	System    string              `json:"system"`
	Env       map[string]string   `json:"env"`
}

// TestLoadMatchesShowDerivation compares each fixture's graph with the
// golden `nix show-derivation -r` JSON real Nix wrote for it: the same
// derivations, and per derivation the same system, outputs, input
// derivations with their output names, and input sources.
func TestLoadMatchesShowDerivation(t *testing.T) {
	for _, f := range fixtures(t) {
		t.Run(f.file+"/"+f.attr, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(testdata, "golden", f.file, f.attr+".show.json"))
			if err != nil {
				t.Fatal(err)
			}
			var want map[string]showDerivation
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			g := load(t, storeRoot, []store.Path{f.drv}, graph.Options{})
			if g.Len() != len(want) {
				t.Errorf("%d nodes, nix show-derivation -r has %d", g.Len(), len(want))
			}
			if r := g.Roots(); len(r) != 1 || g.Node(r[0]).Path != f.drv {
				t.Errorf("Roots() = %v", r)
			}
			for i := range g.Len() {
				n := g.Node(graph.NodeID(i))
				w, ok := want[n.Path.String()]
				if !ok {
					t.Errorf("%s not in nix show-derivation -r", n.Path)
					continue
				}
				if n.System != w.System {
					t.Errorf("%s: system %q, want %q", n.Path, n.System, w.System)
				}
				if name := w.Env["name"]; name != "" && n.Name() != name {
					t.Errorf("%s: Name() = %q, want %q", n.Path, n.Name(), name)
				}
				if len(n.Outputs) != len(w.Outputs) {
					t.Errorf("%s: %d outputs, want %d", n.Path, len(n.Outputs), len(w.Outputs))
				}
				for _, o := range n.Outputs {
					wo, ok := w.Outputs[o.Name]
					if !ok || o.Path.String() != wo.Path {
						t.Errorf("%s: output %s = %q, want %q (present %v)", n.Path, o.Name, o.Path, wo.Path, ok)
					}
				}
				got := make(map[string][]string)
				for _, e := range n.Inputs {
					got[g.Node(e.To).Path.String()] = e.Outputs
				}
				if fmt.Sprint(got) != fmt.Sprint(w.InputDrvs) {
					t.Errorf("%s: inputs\n%v\nwant\n%v", n.Path, got, w.InputDrvs)
				}
				var srcs []string
				for _, s := range n.InputSrcs {
					srcs = append(srcs, s.String())
				}
				if !slices.Equal(srcs, w.InputSrcs) {
					t.Errorf("%s: inputSrcs %v, want %v", n.Path, srcs, w.InputSrcs)
				}
				if _, structured := w.Env["__json"]; !structured {
					features := strings.Fields(w.Env["requiredSystemFeatures"])
					slices.Sort(features)
					features = slices.Compact(features)
					if n.Kind.StaticPaths() && !slices.Equal(n.RequiredFeatures, features) && len(features)+len(n.RequiredFeatures) > 0 {
						t.Errorf("%s: features %q, want %q", n.Path, n.RequiredFeatures, features)
					}
					if n.PreferLocalBuild != (w.Env["preferLocalBuild"] == "1") {
						t.Errorf("%s: preferLocalBuild %v, env %q", n.Path, n.PreferLocalBuild, w.Env["preferLocalBuild"])
					}
					if a, ok := w.Env["allowSubstitutes"]; n.AllowSubstitutes != (!ok || a == "1") {
						t.Errorf("%s: allowSubstitutes %v, env %q", n.Path, n.AllowSubstitutes, a)
					}
				}
			}
		})
	}
}

// TestLoadMatchesNixStore instantiates every testdata/nix file again with
// real Nix into a fresh store and checks the graph of every root against
// the references Nix registered: nodes = the .drv files of
// `nix-store -qR`, edges = the .drv references of each, input sources =
// the other references.
func TestLoadMatchesNixStore(t *testing.T) {
	storetest.RequireNix(t)
	tmp := t.TempDir()
	exprs, err := filepath.Glob(filepath.Join(testdata, "nix", "*.nix"))
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--extra-experimental-features", "nix-command ca-derivations impure-derivations",
		"--store", tmp}, exprs...)
	if out, err := exec.Command("nix-instantiate", args...).CombinedOutput(); err != nil {
		t.Fatalf("nix-instantiate: %v\n%s", err, out)
	}
	for _, f := range fixtures(t) {
		t.Run(f.file+"/"+f.attr, func(t *testing.T) {
			closure := nixLines(t, "--store", tmp, "-qR", f.drv.String())
			refs := dumpDB(t, tmp, closure)
			var want []string
			for _, p := range closure {
				if strings.HasSuffix(p, ".drv") {
					want = append(want, p)
				}
			}
			for _, root := range []string{tmp, storeRoot} {
				g := load(t, root, []store.Path{f.drv}, graph.Options{})
				var got []string
				for i := range g.Len() {
					got = append(got, g.Node(graph.NodeID(i)).Path.String())
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Fatalf("store %s: nodes\n%q\nnix-store -qR:\n%q", root, got, want)
				}
				for i := range g.Len() {
					n := g.Node(graph.NodeID(i))
					var gotRefs []string
					for _, e := range n.Inputs {
						gotRefs = append(gotRefs, g.Node(e.To).Path.String())
					}
					for _, s := range n.InputSrcs {
						gotRefs = append(gotRefs, s.String())
					}
					slices.Sort(gotRefs)
					if w := refs[n.Path.String()]; !slices.Equal(gotRefs, w) {
						t.Errorf("%s: references %q, nix-store has %q", n.Path, gotRefs, w)
					}
				}
			}
		})
	}
}

func nixLines(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("nix-store", args...).Output()
	if err != nil {
		t.Fatalf("nix-store %q: %v", args, err)
	}
	return strings.Fields(string(out))
}

// dumpDB reads `nix-store --dump-db PATHS`: per path its NAR hash, size,
// deriver, reference count and references.
func dumpDB(t *testing.T, root string, paths []string) map[string][]string {
	t.Helper()
	out, err := exec.Command("nix-store", append([]string{"--store", root, "--dump-db"}, paths...)...).Output()
	if err != nil {
		t.Fatalf("nix-store --dump-db: %v", err)
	}
	refs := make(map[string][]string)
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	next := func() string {
		if !sc.Scan() {
			t.Fatalf("nix-store --dump-db: truncated output")
		}
		return sc.Text()
	}
	for sc.Scan() {
		p := sc.Text()
		next() // NAR hash
		next() // size
		next() // deriver
		var n int
		if _, err := fmt.Sscan(next(), &n); err != nil {
			t.Fatal(err)
		}
		rs := []string{}
		for range n {
			if r := next(); r != p {
				rs = append(rs, r)
			}
		}
		slices.Sort(rs)
		refs[p] = rs
	}
	return refs
}

// TestOrderDeterministic loads all fixture roots at once with one and
// with many workers, in two root orders: the node order is the same.
func TestOrderDeterministic(t *testing.T) {
	var roots []store.Path
	for _, f := range fixtures(t) {
		roots = append(roots, f.drv)
	}
	a := load(t, storeRoot, roots, graph.Options{Concurrency: 1})
	slices.Reverse(roots)
	for _, c := range []int{0, 3, 16} {
		b := load(t, storeRoot, roots, graph.Options{Concurrency: c})
		if a.Len() != b.Len() {
			t.Fatalf("concurrency %d: %d nodes, want %d", c, b.Len(), a.Len())
		}
		for i := range a.Len() {
			if a.Node(graph.NodeID(i)).Path != b.Node(graph.NodeID(i)).Path {
				t.Fatalf("concurrency %d: node %d is %s, want %s", c, i, b.Node(graph.NodeID(i)).Path, a.Node(graph.NodeID(i)).Path)
			}
		}
		var unique []store.Path
		for _, r := range roots {
			if !slices.Contains(unique, r) {
				unique = append(unique, r)
			}
		}
		if len(b.Roots()) != len(unique) {
			t.Errorf("%d roots, want %d", len(b.Roots()), len(unique))
		}
		for i, r := range b.Roots() {
			if b.Node(r).Path != unique[i] {
				t.Errorf("Roots()[%d] = %s, want %s", i, b.Node(r).Path, unique[i])
			}
		}
	}
}

func rootOf(t *testing.T, file, attr string) store.Path { return rootOfFile(t, file, attr) }

func rootOfFile(t testing.TB, file, attr string) store.Path {
	t.Helper()
	for _, f := range fixtures(t) {
		if f.file == file && f.attr == attr {
			return f.drv
		}
	}
	t.Fatalf("no fixture %s %s", file, attr)
	return store.Path{}
}

func byName(t *testing.T, g *graph.Graph, name string) graph.NodeID {
	t.Helper()
	for i := range g.Len() {
		if g.Node(graph.NodeID(i)).Name() == name {
			return graph.NodeID(i)
		}
	}
	t.Fatalf("no node %s", name)
	return -1
}

func names(g *graph.Graph, ids []graph.NodeID) []string {
	var s []string
	for _, id := range ids {
		s = append(s, g.Node(id).Name())
	}
	return s
}

// TestCrossViews checks the per-system and per-feature views on the
// pkgsCross-like fixture.
func TestCrossViews(t *testing.T) {
	g := load(t, storeRoot, []store.Path{rootOf(t, "cross", "vm-test"), rootOf(t, "cross", "system-riscv64")}, graph.Options{})
	var systems []string
	for _, v := range g.BySystem() {
		systems = append(systems, v.System)
	}
	if want := []string{"aarch64-linux", "riscv64-linux", "x86_64-linux"}; !slices.Equal(systems, want) {
		t.Errorf("systems %q, want %q", systems, want)
	}
	features := make(map[string][]string)
	for _, fv := range g.ByFeature() {
		features[fv.Feature] = names(g, fv.Nodes)
	}
	want := map[string][]string{
		"big-parallel": {"linux-aarch64-unknown-linux-gnu-6.1", "linux-riscv64-unknown-linux-gnu-6.1"},
		"kvm":          {"vm-test-run-pi-boot"},
		"nixos-test":   {"vm-test-run-pi-boot"},
	}
	for f, w := range want {
		got := features[f]
		slices.Sort(got)
		if !slices.Equal(got, w) {
			t.Errorf("feature %s: %q, want %q", f, got, w)
		}
	}
	vm := g.Node(byName(t, g, "vm-test-run-pi-boot"))
	if !slices.Equal(vm.RequiredFeatures, []string{"kvm", "nixos-test"}) {
		t.Errorf("vm-test features %q", vm.RequiredFeatures)
	}
	pi := g.Node(byName(t, g, "nixos-system-pi-23.05"))
	if !pi.PreferLocalBuild || pi.AllowSubstitutes {
		t.Errorf("system-aarch64: preferLocalBuild %v allowSubstitutes %v", pi.PreferLocalBuild, pi.AllowSubstitutes)
	}
	src := g.Node(byName(t, g, "gcc-12.2.0.tar.xz"))
	if src.Kind != drv.FixedOutput || !src.PreferLocalBuild || !src.AllowSubstitutes {
		t.Errorf("gcc source: kind %v preferLocalBuild %v allowSubstitutes %v", src.Kind, src.PreferLocalBuild, src.AllowSubstitutes)
	}

	// The aarch64 libc is in the x86_64 SDK's closure through the cross
	// gcc, with outputs dev and out.
	sdk := load(t, storeRoot, []store.Path{rootOf(t, "cross", "sdk-aarch64")}, graph.Options{})
	libc := byName(t, sdk, "glibc-aarch64-unknown-linux-gnu-2.37")
	users := names(sdk, sdk.Dependents(libc))
	if !slices.Contains(users, "aarch64-unknown-linux-gnu-gcc-12.2.0") {
		t.Errorf("glibc-aarch64 used by %q", users)
	}
	gcc := sdk.Node(byName(t, sdk, "aarch64-unknown-linux-gnu-gcc-12.2.0"))
	for _, e := range gcc.Inputs {
		if e.To == libc && !slices.Equal(e.Outputs, []string{"dev", "out"}) {
			t.Errorf("gcc uses glibc outputs %q", e.Outputs)
		}
	}
}

// TestCriticalPath checks depth, LongestChain, CriticalPath and
// BottomLevels on the plan fixture against brute force.
func TestCriticalPath(t *testing.T) {
	g := load(t, storeRoot, []store.Path{rootOf(t, "plan", "tests"), rootOf(t, "plan", "big")}, graph.Options{})
	// plan-tests -> plan-app -> plan-cli|plan-gui|plan-docs -> ... -> plan-seed
	if d := g.MaxDepth(); d != 6 {
		t.Errorf("MaxDepth() = %d, want 6", d)
	}
	chain := g.LongestChain()
	if len(chain) != g.MaxDepth() {
		t.Errorf("LongestChain() = %q", names(g, chain))
	}
	checkChain(t, g, chain)
	if got := names(g, chain); got[0] != "plan-tests" || got[len(got)-1] != "plan-seed" {
		t.Errorf("LongestChain() = %q", got)
	}

	cost := func(id graph.NodeID) time.Duration {
		switch g.Node(id).Name() {
		case "plan-lib-b":
			return 10 * time.Second
		case "plan-big":
			return 25 * time.Second
		}
		return time.Second
	}
	path, total := g.CriticalPath(cost)
	checkChain(t, g, path)
	if got, want := names(g, path), []string{"plan-big", "plan-base", "plan-seed"}; !slices.Equal(got, want) || total != 27*time.Second {
		t.Errorf("CriticalPath = %q %v, want %q 27s", got, total, want)
	}
	levels := g.BottomLevels(cost)
	for i := range g.Len() {
		if want := longestUp(g, graph.NodeID(i), cost); levels[i] != want {
			t.Errorf("BottomLevels[%s] = %v, want %v", g.Node(graph.NodeID(i)).Name(), levels[i], want)
		}
	}
	// seed, base, big (25s) beats seed, base, lib-b (10s), gui, app, tests.
	if l := levels[byName(t, g, "plan-seed")]; l != 27*time.Second {
		t.Errorf("seed's bottom level %v, want 27s", l)
	}
	if l := levels[byName(t, g, "plan-lib-b")]; l != 13*time.Second {
		t.Errorf("lib-b's bottom level %v, want 13s (lib-b, gui, app, tests)", l)
	}
}

func checkChain(t *testing.T, g *graph.Graph, chain []graph.NodeID) {
	t.Helper()
	if len(g.Dependents(chain[0])) != 0 || len(g.Node(chain[len(chain)-1]).Inputs) != 0 {
		t.Errorf("chain %q does not run from a top to a leaf", names(g, chain))
	}
	for i := 1; i < len(chain); i++ {
		if !slices.ContainsFunc(g.Node(chain[i-1]).Inputs, func(e graph.Edge) bool { return e.To == chain[i] }) {
			t.Errorf("chain %q: %s is no input of %s", names(g, chain), g.Node(chain[i]).Name(), g.Node(chain[i-1]).Name())
		}
	}
}

func longestUp(g *graph.Graph, id graph.NodeID, cost func(graph.NodeID) time.Duration) time.Duration {
	var m time.Duration
	for _, d := range g.Dependents(id) {
		m = max(m, longestUp(g, d, cost))
	}
	return m + cost(id)
}

func TestLookupAndDerivation(t *testing.T) {
	root := rootOf(t, "diff-v1", "website")
	g := load(t, storeRoot, []store.Path{root}, graph.Options{})
	kept := load(t, storeRoot, []store.Path{root}, graph.Options{KeepDerivations: true})
	for i := range g.Len() {
		id := graph.NodeID(i)
		n := g.Node(id)
		data, err := os.ReadFile(filepath.Join(storeRoot, n.Path.String()))
		if err != nil {
			t.Fatal(err)
		}
		want, err := drv.Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, gr := range []*graph.Graph{g, kept} {
			d, err := gr.Derivation(id)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(d) != fmt.Sprint(want) {
				t.Errorf("Derivation(%s) differs from the file", n.Path)
			}
		}
		for _, o := range n.Outputs {
			if got, name, ok := g.LookupOutput(o.Path); !ok || got != id || name != o.Name {
				t.Errorf("LookupOutput(%s) = %d %q %v", o.Path, got, name, ok)
			}
		}
	}
	if _, _, ok := g.LookupOutput(root); ok {
		t.Errorf("LookupOutput(a .drv) found something")
	}
	if _, ok := g.Lookup(store.MustParsePath("/nix/store/00000000000000000000000000000000-x.drv")); ok {
		t.Errorf("Lookup of a stranger found something")
	}
}

// fakeStore writes hand-made .drv files into a chroot store: each name
// gets a fixed path, and its inputs are the named derivations (which may
// be missing, or form a cycle: real Nix cannot write either).
type fakeStore struct {
	t    testing.TB
	root string
}

func newFakeStore(t testing.TB) *fakeStore {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "nix", "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &fakeStore{t, root}
}

func fakePath(name string) store.Path {
	sum := sha256.Sum256([]byte(name))
	var d [store.DigestSize]byte
	copy(d[:], sum[:])
	p, err := store.NewPath(d, name)
	if err != nil {
		panic(err)
	}
	return p
}

func (s *fakeStore) drv(name string, inputs ...string) store.Path {
	p := fakePath(name + ".drv")
	var in []string
	for _, i := range inputs {
		in = append(in, fakePath(i+".drv").String())
	}
	slices.Sort(in)
	var b strings.Builder
	out := fakePath(name).String()
	fmt.Fprintf(&b, `Derive([("out","%s","","")],[`, out)
	for i, p := range in {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `("%s",["out"])`, p)
	}
	fmt.Fprintf(&b, `],[],"x86_64-linux","/bin/sh",[],[("name","%s"),("out","%s")])`, name, out)
	s.write(p, b.String())
	return p
}

func (s *fakeStore) write(p store.Path, content string) {
	if err := os.WriteFile(filepath.Join(s.root, p.String()), []byte(content), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func TestLoadErrors(t *testing.T) {
	s := newFakeStore(t)
	ok := s.drv("ok")
	missingInput := s.drv("needs-ghost", "ok", "ghost")
	s.drv("cycle-a", "cycle-b")
	s.drv("cycle-b", "cycle-c")
	s.drv("cycle-c", "cycle-a")
	cycleTop := s.drv("cycle-top", "ok", "cycle-a")
	selfRef := s.drv("self", "self")
	corrupt := fakePath("corrupt.drv")
	s.write(corrupt, `Derive([("out","/nix/store/x`)
	usesCorrupt := s.drv("uses-corrupt", "corrupt")
	badInput := fakePath("bad-input.drv")
	s.write(badInput, fmt.Sprintf(`Derive([("out","%s","","")],[("%s",["out"])],[],"x86_64-linux","/bin/sh",[],[])`,
		fakePath("bad-input"), fakePath("not-a-drv")))

	for _, tc := range []struct {
		name  string
		roots []store.Path
		path  store.Path // LoadError.Path
		from  store.Path // LoadError.From
		is    error
		cycle []string
	}{
		{name: "missing root", roots: []store.Path{fakePath("nothing.drv")}, path: fakePath("nothing.drv"), is: fs.ErrNotExist},
		{name: "missing input", roots: []store.Path{missingInput}, path: fakePath("ghost.drv"), from: missingInput, is: fs.ErrNotExist},
		{name: "corrupt root", roots: []store.Path{corrupt}, path: corrupt, is: drv.ErrSyntax},
		{name: "corrupt input", roots: []store.Path{ok, usesCorrupt}, path: corrupt, from: usesCorrupt, is: drv.ErrSyntax},
		{name: "root not a drv", roots: []store.Path{fakePath("ok")}, path: fakePath("ok"), is: graph.ErrNotDerivation},
		{name: "input not a drv", roots: []store.Path{badInput}, path: fakePath("not-a-drv"), from: badInput, is: graph.ErrNotDerivation},
		{name: "cycle", roots: []store.Path{cycleTop}, is: graph.ErrCycle, cycle: []string{"cycle-a", "cycle-b", "cycle-c"}},
		{name: "self reference", roots: []store.Path{selfRef}, is: graph.ErrCycle, cycle: []string{"self"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []int{1, 4} {
				_, err := graph.Load(context.Background(), s.root, tc.roots, graph.Options{Concurrency: c})
				if !errors.Is(err, tc.is) {
					t.Fatalf("err = %v, want %v", err, tc.is)
				}
				if tc.cycle != nil {
					var ce *graph.CycleError
					if !errors.As(err, &ce) {
						t.Fatalf("err = %T %v, want a *CycleError", err, err)
					}
					var got []string
					for _, p := range ce.Cycle {
						got = append(got, strings.TrimSuffix(p.Name(), ".drv"))
					}
					if !slices.Equal(got, tc.cycle) {
						t.Errorf("cycle %q, want %q", got, tc.cycle)
					}
					for _, p := range ce.Cycle {
						if !strings.Contains(err.Error(), p.String()) {
							t.Errorf("%q does not name %s", err, p)
						}
					}
					continue
				}
				var le *graph.LoadError
				if !errors.As(err, &le) {
					t.Fatalf("err = %T %v, want a *LoadError", err, err)
				}
				if le.Path != tc.path || le.From != tc.from {
					t.Errorf("LoadError{Path: %s, From: %s}, want {%s, %s}", le.Path, le.From, tc.path, tc.from)
				}
				if !strings.Contains(err.Error(), tc.path.String()) {
					t.Errorf("%q does not name %s", err, tc.path)
				}
			}
		})
	}
}

func TestLoadEmptyAndDuplicateRoots(t *testing.T) {
	g := load(t, storeRoot, nil, graph.Options{})
	if g.Len() != 0 || g.MaxDepth() != 0 || g.LongestChain() != nil || len(g.BySystem()) != 0 {
		t.Errorf("empty graph: %d nodes", g.Len())
	}
	if p, d := g.CriticalPath(func(graph.NodeID) time.Duration { return 1 }); p != nil || d != 0 {
		t.Errorf("empty CriticalPath = %v %v", p, d)
	}
	r := rootOf(t, "plan", "app")
	g = load(t, storeRoot, []store.Path{r, r, rootOf(t, "plan", "cli"), r}, graph.Options{})
	if got := names(g, g.Roots()); !slices.Equal(got, []string{"plan-app", "plan-cli"}) {
		t.Errorf("Roots() = %q", got)
	}
}

// TestLoadCancel cancels loads of a long chain at once and midway: Load
// returns ctx's error (or finishes first) and leaves no goroutine behind.
func TestLoadCancel(t *testing.T) {
	s := newFakeStore(t)
	var top store.Path
	for i := range 3000 {
		if i == 0 {
			top = s.drv("chain-0")
		} else {
			top = s.drv(fmt.Sprintf("chain-%d", i), fmt.Sprintf("chain-%d", i-1), "chain-0")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := graph.Load(ctx, s.root, []store.Path{top}, graph.Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled before: err = %v", err)
	}
	storetest.NoGoroutinesIn(t, "/eval/graph/")

	// Mid-load: chain-1500's .drv is a FIFO, so the loader blocks on it
	// and opening its other end says when. Cancelling then, with 1500
	// derivations still to load behind it, must end the load.
	mid := filepath.Join(s.root, fakePath("chain-1500.drv").String())
	text, err := os.ReadFile(mid)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(mid); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(mid, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := graph.Load(ctx, s.root, []store.Path{top}, graph.Options{Concurrency: 4})
		done <- err
	}()
	w, err := os.OpenFile(mid, os.O_WRONLY, 0) // returns once the loader opened it
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	_, werr := w.Write(text)
	w.Close()
	if werr != nil {
		t.Fatal(werr)
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled mid-load: err = %v", err)
	}
	storetest.NoGoroutinesIn(t, "/eval/graph/")
}

// TestLoadRealStore instantiates the plan fixture into the machine's store
// (through the daemon) and loads it from /nix/store: the same nodes as
// nix-store -qR.
func TestLoadRealStore(t *testing.T) {
	storetest.RequireDaemon(t)
	out, err := exec.Command("nix-instantiate", filepath.Join(testdata, "nix", "plan.nix"), "-A", "tests").Output()
	if err != nil {
		t.Fatalf("nix-instantiate: %v", err)
	}
	root := store.MustParsePath(strings.TrimSpace(string(out)))
	if root != rootOf(t, "plan", "tests") {
		t.Fatalf("instantiated %s, testdata/roots has %s", root, rootOf(t, "plan", "tests"))
	}
	var want []string
	for _, p := range nixLines(t, "-qR", root.String()) {
		if strings.HasSuffix(p, ".drv") {
			want = append(want, p)
		}
	}
	for _, r := range []string{"", "/"} {
		g := load(t, r, []store.Path{root}, graph.Options{})
		var got []string
		for i := range g.Len() {
			got = append(got, g.Node(graph.NodeID(i)).Path.String())
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("root %q: nodes %q, nix-store -qR %q", r, got, want)
		}
		if g.File(0) != g.Node(0).Path.String() {
			t.Errorf("File(0) = %s", g.File(0))
		}
	}
}
