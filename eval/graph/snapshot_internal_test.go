package graph

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
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
