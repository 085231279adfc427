package graph

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/store"
)

// TestPruneSnapshots keeps the newest snapshots and nothing else is touched.
func TestPruneSnapshots(t *testing.T) {
	dir := t.TempDir()
	base := time.Now()
	for i := range 5 {
		f := filepath.Join(dir, fmt.Sprintf("%d.graph", i))
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		mt := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(f, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "other"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pruneSnapshots(dir, 3)
	for i, want := range []bool{false, false, true, true, true} {
		_, err := os.Stat(filepath.Join(dir, fmt.Sprintf("%d.graph", i)))
		if (err == nil) != want {
			t.Errorf("%d.graph kept = %v, want %v", i, err == nil, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "other")); err != nil {
		t.Error("a file that is not a snapshot was removed")
	}
}

// TestSnapshotDuplicateNode: a snapshot naming one path for two nodes is
// rejected, naming the second.
func TestSnapshotDuplicateNode(t *testing.T) {
	a := mustPath(t, "/nix/store/1b8m03r63zqhnjf7l5wnldhh7c134ap5-a.drv")
	g := &Graph{nodes: []Node{
		{Path: a, System: "x86_64-linux", Kind: drv.InputAddressed, Outputs: []Output{}, Inputs: []Edge{}},
		{Path: a, System: "x86_64-linux", Kind: drv.InputAddressed, Outputs: []Output{}, Inputs: []Edge{}},
	}, roots: []NodeID{1}}
	_, err := DecodeSnapshot(g.AppendSnapshot(nil), "")
	if !errors.Is(err, ErrSnapshot) || !strings.Contains(err.Error(), "node 1 repeats "+a.String()) {
		t.Fatalf("got %v, want ErrSnapshot naming node 1", err)
	}
}

func mustPath(t *testing.T, s string) store.Path {
	t.Helper()
	p, err := store.ParsePath(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
