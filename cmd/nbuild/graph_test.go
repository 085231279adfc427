package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/eval/installable"
	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/sched/plan"
	"github.com/nbuild/nbuild/store/location"
	"github.com/nbuild/nbuild/store/storetest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// run runs nbuild in-process and returns stdout, stderr and the exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return runEnv(t, nil, args...)
}

// runEnv is run with environment variables vars (and no others).
func runEnv(t *testing.T, vars map[string]string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	env := &cmdEnv{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: func(k string) string { return vars[k] }}
	code := runMain(context.Background(), env, args)
	return stdout.String(), stderr.String(), code
}

// fixtureRoot returns the .drv path of ATTR in testdata/roots/NAME.txt.
func fixtureRoot(t *testing.T, name, attr string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "roots", name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if a, p, ok := strings.Cut(line, " "); ok && a == attr {
			return p
		}
	}
	t.Fatalf("no attribute %s in testdata/roots/%s.txt", attr, name)
	return ""
}

const testStore = "../../testdata/store"

// graphArgs are the flags that make a plan independent of this machine.
func graphArgs(extra ...string) []string {
	return append([]string{"graph", "--store", testStore, "--nix-conf", "testdata/nix.conf", "--cache-dir", "none"}, extra...)
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	file := filepath.Join("testdata", "graph", name)
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n%s", name, got)
	}
}

// chrootPrefix hides the absolute path of the test store in outputs.
func stable(s string) string {
	abs, _ := filepath.Abs(testStore)
	return strings.ReplaceAll(s, abs, "testdata/store")
}

func TestGraphGolden(t *testing.T) {
	pi := testStore + fixtureRoot(t, "cross", "system-aarch64")
	for _, format := range []string{"summary", "tree", "dot", "json"} {
		t.Run(format, func(t *testing.T) {
			out, errOut, code := run(t, graphArgs("--format", format, "--builders", "@../../testdata/machines", pi)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			golden(t, "pi-"+format+".golden", stable(out))
		})
	}
}

// TestGraphSnapshot runs the golden plans through a graph snapshot and a
// cached schedule: the first run saves them, later ones read them, and
// all print exactly what --no-cache (every .drv read, the schedule
// simulated) prints. Every format plans the same jobs: one schedule.
func TestGraphSnapshot(t *testing.T) {
	pi := testStore + fixtureRoot(t, "cross", "system-aarch64")
	cache := filepath.Join(t.TempDir(), "metacache")
	for _, format := range []string{"summary", "tree", "dot", "json"} {
		base := []string{"graph", "--store", testStore, "--nix-conf", "testdata/nix.conf", "--format", format, "--builders", "@../../testdata/machines"}
		want, _, wantCode := run(t, append(base, "--cache-dir", "none", pi)...)
		for i := range 2 {
			got, errOut, code := run(t, append(base, "--cache-dir", cache, pi)...)
			if code != wantCode || got != want {
				t.Fatalf("%s, run %d: exit %d (want %d), output differs from --cache-dir none: %s\n%s", format, i, code, wantCode, errOut, got)
			}
		}
		if got, _, _ := run(t, append(base, "--cache-dir", cache, "--no-cache", pi)...); got != want {
			t.Fatalf("%s --no-cache differs", format)
		}
	}
	snaps, _ := filepath.Glob(filepath.Join(cache+"-graphs", "*.graph"))
	if len(snaps) != 1 {
		t.Fatalf("want one snapshot in %s-graphs, found %v", cache, snaps)
	}
	sims, _ := filepath.Glob(filepath.Join(cache+"-graphs", "*.sim"))
	if len(sims) != 1 {
		t.Fatalf("want one schedule in %s-graphs, found %v", cache, sims)
	}
}

// TestGraphTreeAndDotMatchNix instantiates the cross closure into a store
// that real Nix knows (the committed fixture store has no database), and
// compares nbuild's tree with nix-store -q --tree line for line once
// nbuild's annotations are cut, and the DOT node and edge sets with
// nix-store -q --graph.
func TestGraphTreeAndDotMatchNix(t *testing.T) {
	storetest.RequireNix(t)
	root := filepath.Join(t.TempDir(), "store")
	cmd := exec.Command("nix-instantiate", "--store", root, "../../testdata/nix/cross.nix", "-A", "system-aarch64", "-A", "sdk-aarch64")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix-instantiate: %v", err)
	}
	for _, drv := range strings.Fields(string(out)) {
		args := []string{"graph", "--store", root, "--nix-conf", "testdata/nix.conf", "--cache-dir", "none", "--builders", "@../../testdata/machines"}
		tree, errOut, code := run(t, append(args, "--format", "tree", root+drv)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		note := regexp.MustCompile(`  \([^)]*\)`)
		want := storetest.NixStore(t, root, "-q", "--tree", drv)
		if got := note.ReplaceAllString(tree, ""); got != want {
			t.Errorf("%s: tree differs from nix-store -q --tree:\n got:\n%s\nwant:\n%s", drv, got, want)
		}
		dot, _, _ := run(t, append(args, "--format", "dot", root+drv)...)
		gotNodes, gotEdges := dotSets(dot)
		wantNodes, wantEdges := dotSets(storetest.NixStore(t, root, "-q", "--graph", drv))
		if gotNodes != wantNodes {
			t.Errorf("%s: DOT nodes differ:\n got %s\nwant %s", drv, gotNodes, wantNodes)
		}
		if gotEdges != wantEdges {
			t.Errorf("%s: DOT edges differ:\n got %s\nwant %s", drv, gotEdges, wantEdges)
		}
	}
}

// dotSets returns the sorted node ids and edges of a DOT graph.
func dotSets(dot string) (nodes, edges string) {
	var ns, es []string
	sc := bufio.NewScanner(strings.NewReader(dot))
	node := regexp.MustCompile(`^("[^"]+") \[label`)
	edge := regexp.MustCompile(`^("[^"]+") -> ("[^"]+")`)
	for sc.Scan() {
		if m := edge.FindStringSubmatch(sc.Text()); m != nil {
			es = append(es, m[1]+"->"+m[2])
		} else if m := node.FindStringSubmatch(sc.Text()); m != nil {
			ns = append(ns, m[1])
		}
	}
	sort.Strings(ns)
	sort.Strings(es)
	return strings.Join(ns, " "), strings.Join(es, " ")
}

func planNodes(t *testing.T, out string) []plan.JSONNode {
	t.Helper()
	var p plan.JSONPlan
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, out)
	}
	return p.Nodes
}

func TestGraphUnbuildable(t *testing.T) {
	rv := testStore + fixtureRoot(t, "cross", "system-riscv64")
	// No riscv64 builder: the riscv64 derivations are listed first, with
	// the reason, and the exit status is 1.
	// No riscv64 builder: the plan of the rest is on stdout, the
	// unbuildable derivations grouped by cause on stderr, exit status 1.
	summary, out, code := run(t, graphArgs("--builders", "ssh://pi aarch64-linux", rv)...)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(summary, "x86_64-linux      0              0        17") {
		t.Errorf("no plan of what can be built on stdout:\n%s", summary)
	}
	first, _, _ := strings.Cut(out, "\n")
	if !strings.HasPrefix(first, "error: 5 derivation(s) cannot be built on any builder") {
		t.Errorf("first line of stderr %q, want the unbuildable list", first)
	}
	// Grouped by cause, with the paths and a hint.
	for _, want := range []string{
		"  no builder for system riscv64-linux: 5 derivation(s)\n",
		"-nixos-system-star64-23.05.drv\n",
		"    hint: add a riscv64-linux builder",
		"extra-platforms = riscv64-linux",
		"  and 3 derivation(s) that depend on them are blocked\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q:\n%s", want, out)
		}
	}
	// JSON goes to stdout, the list to stderr, exit 1 all the same.
	js, errOut, code := run(t, graphArgs("--format", "json", "--builders", "ssh://pi aarch64-linux", rv)...)
	if code != 1 || !strings.Contains(errOut, "no builder for system riscv64-linux") {
		t.Errorf("json: exit %d, stderr %q", code, errOut)
	}
	states := map[string]int{}
	for _, n := range planNodes(t, js) {
		states[n.State]++
		if n.State == "unbuildable" && n.Reason == "" {
			t.Errorf("%s unbuildable without a reason", n.DrvPath)
		}
	}
	if states["unbuildable"] != 5 {
		t.Errorf("states %v, want 5 unbuildable", states)
	}
	var doc plan.JSONPlan
	if err := json.Unmarshal([]byte(js), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Unbuildable) != 1 || doc.Unbuildable[0].Cause != "no builder for system riscv64-linux" || len(doc.Unbuildable[0].DrvPaths) != 5 || doc.Unbuildable[0].Hint == "" {
		t.Errorf("JSON unbuildable groups: %+v", doc.Unbuildable)
	}
	// With a riscv64 builder everything can be placed.
	if _, errOut, code := run(t, graphArgs("--builders", "@../../testdata/machines", rv)...); code != 0 {
		t.Errorf("with a riscv64 builder: exit %d: %s", code, errOut)
	}
}

// TestGraphSettingsSources: builders and extra-platforms are taken from
// every place Nix takes them, with Nix's precedence: nix.conf, the user's
// files, NIX_CONFIG, --option, and --builders above all.
func TestGraphSettingsSources(t *testing.T) {
	rv := testStore + fixtureRoot(t, "cross", "system-riscv64")
	home := t.TempDir()
	const rvBuilder = "ssh://rv riscv64-linux - 2"
	for _, tc := range []struct {
		name string
		vars map[string]string
		args []string
		want int
	}{
		{"none", nil, nil, 1},
		{"NIX_CONFIG builders", map[string]string{"NIX_CONFIG": "builders = " + rvBuilder}, nil, 0},
		{"NIX_CONFIG extra-platforms", map[string]string{"NIX_CONFIG": "extra-platforms = riscv64-linux"}, nil, 0},
		{"--option builders", nil, []string{"--option", "builders", rvBuilder}, 0},
		{"--option over NIX_CONFIG", map[string]string{"NIX_CONFIG": "builders = " + rvBuilder}, []string{"--option", "builders", ""}, 1},
		{"--builders over --option", nil, []string{"--option", "builders", "", "--builders", rvBuilder}, 0},
		{"user file", map[string]string{"XDG_CONFIG_HOME": filepath.Join(home, "nbuild-user")}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.MkdirAll(filepath.Join(home, "nbuild-user", "nix"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(home, "nbuild-user", "nix", "nix.conf"), []byte("builders = "+rvBuilder+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			vars := map[string]string{"HOME": home}
			maps.Copy(vars, tc.vars)
			args := graphArgs(append(tc.args, rv)...)
			out, errOut, code := runEnv(t, vars, args...)
			if code != tc.want {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.want, out, errOut)
			}
		})
	}
	// A malformed NIX_CONFIG is an error that says where it is.
	_, errOut, code := runEnv(t, map[string]string{"NIX_CONFIG": "builders"}, graphArgs(rv)...)
	if code != 1 || !strings.Contains(errOut, "illegal configuration line 'builders' in 'NIX_CONFIG'") {
		t.Errorf("bad NIX_CONFIG: exit %d, %q", code, errOut)
	}
}

// TestPlanLibraryMatchesCLI computes the README's plan with exported APIs
// only (as another Go tool would) and requires the same state and builder
// for every derivation as `nbuild graph --format json`.
func TestPlanLibraryMatchesCLI(t *testing.T) {
	pi := testStore + fixtureRoot(t, "cross", "system-aarch64")
	out, errOut, code := run(t, graphArgs("--format", "json", "--builders", "@../../testdata/machines", pi)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	cli := map[string]string{}
	for _, n := range planNodes(t, out) {
		cli[n.DrvPath] = n.State + " " + n.Builder
	}

	ctx := context.Background()
	loc, err := location.Parse(testStore, location.Options{})
	if err != nil {
		t.Fatal(err)
	}
	roots, err := installable.Resolve(ctx, []string{pi}, installable.Options{Root: loc.Root})
	if err != nil {
		t.Fatal(err)
	}
	g, err := graph.Load(ctx, loc.Root, roots, graph.Options{})
	if err != nil {
		t.Fatal(err)
	}
	settings, err := sched.LoadSettings(sched.SettingsOptions{ConfFile: "testdata/nix.conf", Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	machines, err := settings.Machines("@../../testdata/machines", sched.LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vi, err := plan.QueryValidity(ctx, g, g.Roots(), plan.ValidityOptions{Store: loc})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.New(g, vi, plan.Options{Machines: machines, DefaultDuration: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if g.Len() != len(cli) {
		t.Fatalf("library plan has %d derivations, the CLI's %d", g.Len(), len(cli))
	}
	for id := range g.Len() {
		n := graph.NodeID(id)
		got := p.State(n).String() + " "
		if b := p.Builder(n); b >= 0 {
			got += p.Machines[b].Name()
		}
		if want := cli[g.Node(n).Path.String()]; got != want {
			t.Errorf("%s: library %q, CLI %q", g.Node(n).Path, got, want)
		}
	}
}

func TestGraphFeatures(t *testing.T) {
	vm := testStore + fixtureRoot(t, "cross", "vm-test")
	builders := "ssh://plain x86_64-linux,aarch64-linux - 4 1 big-parallel;" +
		"ssh://kvm-box x86_64-linux - 2 1 kvm,nixos-test,big-parallel;" +
		"ssh://big x86_64-linux,aarch64-linux - 8 8 - big-parallel"
	out, errOut, code := run(t, graphArgs("--format", "json", "--builders", builders, vm)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	sawKVM, sawBig := false, false
	for _, n := range planNodes(t, out) {
		has := func(f string) bool {
			for _, x := range n.RequiredFeatures {
				if x == f {
					return true
				}
			}
			return false
		}
		if has("kvm") {
			sawKVM = true
			if n.Builder != "ssh://kvm-box" {
				t.Errorf("%s requires kvm but is placed on %q", n.Name, n.Builder)
			}
		}
		if n.Builder == "ssh://big" {
			sawBig = true
			if !has("big-parallel") {
				t.Errorf("%s does not require big-parallel but is placed on the builder where it is mandatory", n.Name)
			}
		}
	}
	if !sawKVM || !sawBig {
		t.Errorf("fixture no longer exercises both rules: kvm %v, mandatory big-parallel %v", sawKVM, sawBig)
	}
}

func TestGraphWhyCross(t *testing.T) {
	sdk := testStore + fixtureRoot(t, "cross", "sdk-aarch64")
	glibc := fixtureRoot(t, "cross", "glibc-aarch64")
	out, errOut, code := run(t, graphArgs("--why", glibc, sdk)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// The aarch64 libc is in the x86_64 SDK only through the cross gcc.
	if !regexp.MustCompile(`(?s)cross-sdk-aarch64\.drv.*aarch64-unknown-linux-gnu-gcc-[^ ]*\.drv.*glibc-aarch64-unknown-linux-gnu-2\.37\.drv`).MatchString(out) {
		t.Errorf("chain does not go through the cross compiler:\n%s", out)
	}
	golden(t, "why-sdk.golden", out)
	if _, errOut, code := run(t, graphArgs("--why", fixtureRoot(t, "cross", "system-riscv64"), sdk)...); code != 1 || !strings.Contains(errOut, "is not in the closure") {
		t.Errorf("unrelated path: exit %d, %q", code, errOut)
	}
}

func TestGraphDiff(t *testing.T) {
	v1 := testStore + fixtureRoot(t, "diff-v1", "devshell")
	v2 := testStore + fixtureRoot(t, "diff-v2", "devshell")
	out, errOut, code := run(t, graphArgs("--diff", v1, v2)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "because of these 1 change(s)") || !strings.Contains(out, "openssl-3.0.8.drv (was openssl-3.0.7.drv") ||
		!strings.Contains(out, `env version: "3.0.7" -> "3.0.8"`) {
		t.Errorf("root cause not named:\n%s", out)
	}
	golden(t, "diff-devshell.golden", out)
}

func TestGraphUsage(t *testing.T) {
	if _, _, code := run(t, "graph"); code != 2 {
		t.Errorf("no installable: exit %d, want 2", code)
	}
	if _, _, code := run(t, "graph", "--format", "xml", "x.drv"); code != 2 {
		t.Errorf("bad format: exit %d, want 2", code)
	}
	out, _, code := run(t, "graph", "--help")
	if code != 0 || !strings.Contains(out, "Example:") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
	if _, errOut, code := run(t, graphArgs("/tmp/not-a-store-path.drv")...); code != 1 || !strings.Contains(errOut, "not in the Nix store") {
		t.Errorf("bad path: exit %d %q", code, errOut)
	}
	// --store goes through the one store-URI parser: unknown forms name
	// the accepted ones, stores a plan cannot read are refused as usage.
	rv := testStore + fixtureRoot(t, "cross", "system-riscv64")
	for store, want := range map[string]string{
		"foo://bar":               "don't know how to open Nix store 'foo://bar'",
		"ssh-ng://box":            "a ssh-ng store cannot be planned from here",
		"file:///srv/cache":       "a file store cannot be planned from here",
		t.TempDir():               "no nix/store directory under",
		"local?root=" + testStore: "",
	} {
		_, errOut, code := run(t, "graph", "--store", store, "--nix-conf", "testdata/nix.conf", "--cache-dir", "none", "--builders", "@../../testdata/machines", rv)
		if want == "" {
			if code != 0 {
				t.Errorf("--store %s: exit %d: %s", store, code, errOut)
			}
		} else if code == 0 || !strings.Contains(errOut, want) {
			t.Errorf("--store %s: exit %d, %q; want %q", store, code, errOut, want)
		}
	}
	// NIX_REMOTE is the default store, as for Nix.
	if _, errOut, code := runEnv(t, map[string]string{"NIX_REMOTE": "foo://bar"}, "graph", "--cache-dir", "none", rv); code != 1 || !strings.Contains(errOut, "'foo://bar'") {
		t.Errorf("NIX_REMOTE: exit %d, %q", code, errOut)
	}
}

// TestGraphSilentSubstituter: with a substituter that never answers, the
// plan is made after --substitute-timeout, says substitutes are unknown
// and why, and the next plan (same cache) does not ask again.
func TestGraphSilentSubstituter(t *testing.T) {
	storetest.RequireTrusted(t) // the daemon takes substituters from trusted users only
	silent := storetest.SilentServer(t)
	f := filepath.Join(t.TempDir(), "e.nix")
	expr := `derivation { name = "nbuild-silent-` + fmt.Sprint(time.Now().UnixNano()) + `"; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "echo > $out"]; }`
	if err := os.WriteFile(f, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	cacheDir := filepath.Join(t.TempDir(), "meta")
	args := []string{"graph", "--cache-dir", cacheDir, "--nix-conf", "testdata/nix.conf", "--substitute-timeout", "1s",
		"--option", "substituters", silent, "--format", "json", f}
	out, errOut, code := run(t, args...)
	if code != 0 || !strings.Contains(errOut, "warning: substitutes unknown:") || !strings.Contains(errOut, "did not answer within 1s") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var doc plan.JSONPlan
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.SubstitutesUnknown == "" {
		t.Errorf("JSON substitutesUnknown %q (%v)", doc.SubstitutesUnknown, err)
	}
	_, errOut, code = run(t, args...)
	if code != 0 || !strings.Contains(errOut, "ago; they are not asked again") {
		t.Errorf("second plan: exit %d, stderr %q", code, errOut)
	}
	// --offline does not ask at all.
	if _, errOut, code = run(t, append([]string{"graph", "--offline", "--cache-dir", "none", "--nix-conf", "testdata/nix.conf"}, f)...); code != 0 || errOut != "" {
		t.Errorf("--offline: exit %d, stderr %q", code, errOut)
	}
}

// TestGraphDaemonValidity plans through the local nix-daemon: a built
// input is valid, the derivation using it is to build. With no
// substituters nbuild asks the daemon only about outputs present on disk.
func TestGraphDaemonValidity(t *testing.T) {
	storetest.RequireDaemon(t)
	nonce := fmt.Sprint(time.Now().UnixNano())
	expr := `let mk = name: deps: derivation { inherit name; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "echo ${name} ${toString deps} > $out"]; };
  a = mk "nbuild-graph-a-` + nonce + `" [];
in { inherit a; b = mk "nbuild-graph-b-` + nonce + `" [ a ]; }`
	f := filepath.Join(t.TempDir(), "e.nix")
	if err := os.WriteFile(f, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nix-build", "--no-out-link", "--option", "substituters", "", f, "-A", "a").CombinedOutput(); err != nil {
		t.Fatalf("nix-build: %v\n%s", err, out)
	}
	drvB, err := exec.Command("nix-instantiate", f, "-A", "b").Output()
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := run(t, "graph", "--cache-dir", "none", "--nix-conf", "testdata/nix.conf", "--option", "substituters", "", "--format", "json", strings.TrimSpace(string(drvB)))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var plan struct {
		Validity string
		Nodes    []struct{ Name, State string }
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, n := range plan.Nodes {
		states[strings.TrimSuffix(n.Name, "-"+nonce)] = n.State
	}
	if plan.Validity != "nix-daemon" || states["nbuild-graph-a"] != "valid" || states["nbuild-graph-b"] != "build" {
		t.Errorf("validity from %q, states %v; want a valid, b to build", plan.Validity, states)
	}
}

// TestReadmeCommand runs the README's first command as written, from the
// repository root: it must plan the shipped fixture and exit 0.
func TestReadmeCommand(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "go run ./cmd/nbuild ") {
			line = strings.TrimSpace(l)
			break
		}
	}
	if line == "" {
		t.Fatal("README.md has no 'go run ./cmd/nbuild' command")
	}
	t.Chdir("../..")
	var args []string
	for _, w := range strings.Fields(strings.TrimPrefix(line, "go run ./cmd/nbuild ")) {
		if strings.Contains(w, "*") { // the shell's glob
			m, err := filepath.Glob(w)
			if err != nil || len(m) != 1 {
				t.Fatalf("%s matches %v (%v)", w, m, err)
			}
			w = m[0]
		}
		args = append(args, w)
	}
	out, errOut, code := runEnv(t, map[string]string{"HOME": t.TempDir()}, append(args, "--cache-dir", "none")...)
	if code != 0 || !strings.Contains(out, "critical path") || !strings.Contains(out, "aarch64-linux") {
		t.Errorf("%s: exit %d\n%s%s", line, code, out, errOut)
	}
}

// TestGraphWhyBuilder answers "why is this built there" by package name,
// name or path, for several matches, and fails clearly for none.
func TestGraphWhyBuilder(t *testing.T) {
	pi := testStore + fixtureRoot(t, "cross", "system-aarch64")
	out, errOut, code := run(t, graphArgs("--builders", "@../../testdata/machines", "--why-builder", "stdenv-linux", pi)...)
	if code != 0 || strings.Count(out, "-stdenv-linux.drv (") != 2 || !strings.Contains(out, "built on ssh-ng://nbuild@arm-box.example: ") {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = run(t, graphArgs("--builders", "@../../testdata/machines", "--why-builder", "linux-6.1.tar.xz", pi)...)
	if code != 0 || !strings.Contains(out, "built on local: preferLocalBuild") {
		t.Errorf("preferLocalBuild: exit %d\n%s", code, out)
	}
	_, errOut, code = run(t, graphArgs("--builders", "@../../testdata/machines", "--why-builder", "nope", pi)...)
	if code != 1 || !strings.Contains(errOut, "no derivation in the closure matches 'nope'") {
		t.Errorf("no match: exit %d %q", code, errOut)
	}
}
