package graph_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/storetest"
)

// TestWriteShowGolden: WriteShow prints, byte for byte, what
// nix show-derivation -r printed for every fixture root.
func TestWriteShowGolden(t *testing.T) {
	for _, f := range fixtures(t) {
		want, err := os.ReadFile(filepath.Join(testdata, "golden", f.file, f.attr+".show.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, keep := range []bool{true, false} {
			g := load(t, storeRoot, []store.Path{f.drv}, graph.Options{KeepDerivations: keep})
			var out bytes.Buffer
			if err := graph.WriteShow(context.Background(), &out, g); err != nil {
				t.Fatal(err)
			}
			if out.String() != string(want) {
				t.Errorf("%s/%s (keep %v): differs from nix show-derivation -r", f.file, f.attr, keep)
			}
		}
	}
}

type failWriter struct{ after int }

var errWrite = errors.New("write failed")

func (w *failWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errWrite
	}
	w.after--
	return len(p), nil
}

// TestWriteShowStops: a failing writer or a cancelled context ends
// WriteShow with that error and no goroutine left.
func TestWriteShowStops(t *testing.T) {
	var roots []store.Path
	for _, f := range fixtures(t) {
		roots = append(roots, f.drv)
	}
	g := load(t, storeRoot, roots, graph.Options{KeepDerivations: true})
	counter := &failWriter{after: 1 << 30}
	if err := graph.WriteShow(context.Background(), counter, g); err != nil {
		t.Fatal(err)
	}
	writes := 1<<30 - counter.after
	if writes < 3 {
		t.Fatalf("the fixtures' JSON takes %d writes: too few to fail in the middle", writes)
	}
	for after := range writes {
		if err := graph.WriteShow(context.Background(), &failWriter{after: after}, g); !errors.Is(err, errWrite) {
			t.Errorf("writer failing after %d writes: %v", after, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := graph.WriteShow(ctx, &bytes.Buffer{}, g); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	// WriteShow has returned: none of its goroutines may still run (a
	// count of all goroutines also counted the runtime's own, under -race).
	storetest.NoGoroutinesIn(t, "eval/graph/")
}

// drvSourcesExpr uses a derivation's .drv path as a plain string: an input
// source that is a .drv file, not an input derivation.
const drvSourcesExpr = `
let
  mk = name: extra: derivation ({ inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo ${name} > $out" ]; } // extra);
  dep = mk "drvsrc-dep" { };
  inner = mk "drvsrc-inner" { d = dep; };
in mk "drvsrc-top" { innerDrv = builtins.unsafeDiscardOutputDependency inner.drvPath; }
`

// TestLoadWithDrvSources: the closure of such a derivation is what
// nix-store -qR lists among .drv files, and WriteShow prints what
// nix show-derivation -r does.
func TestLoadWithDrvSources(t *testing.T) {
	storetest.RequireNix(t)
	root := filepath.Join(t.TempDir(), "store")
	f := filepath.Join(t.TempDir(), "expr.nix")
	if err := os.WriteFile(f, []byte(drvSourcesExpr), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nix-instantiate", "--store", root, f).Output()
	if err != nil {
		t.Fatal(err)
	}
	top := store.MustParsePath(strings.TrimSpace(string(out)))
	g, err := graph.LoadWithDrvSources(context.Background(), root, []store.Path{top}, graph.Options{KeepDerivations: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := range g.Len() {
		got = append(got, g.Node(graph.NodeID(i)).Path.String())
	}
	var want []string
	for _, p := range nixLines(t, "--store", root, "-qR", top.String()) {
		if strings.HasSuffix(p, ".drv") {
			want = append(want, p)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) || len(want) != 3 {
		t.Errorf("closure %v, nix-store -qR %v", got, want)
	}
	show, err := exec.Command("nix", "--extra-experimental-features", "nix-command", "--store", root, "show-derivation", "-r", top.String()).Output()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := graph.WriteShow(context.Background(), &b, g); err != nil {
		t.Fatal(err)
	}
	if b.String() != string(show) {
		t.Errorf("WriteShow differs from nix show-derivation -r:\n%s\nwant\n%s", b.String(), show)
	}
}
