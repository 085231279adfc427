package cachedir_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store/cachedir"
)

func TestWriteFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b") // made by WriteFile
	for _, data := range []string{"first", "second, longer", ""} {
		if err := cachedir.WriteFile(dir, 0o700, "x.graph", []byte(data)); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(filepath.Join(dir, "x.graph")); err != nil || string(got) != data {
			t.Fatalf("read %q, %v; want %q", got, err, data)
		}
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("dir: %v, %v", info.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left %d files, want only x.graph", len(entries))
	}
	// A directory that cannot be made is an error, and nothing is left.
	if err := cachedir.WriteFile(filepath.Join(dir, "x.graph", "sub"), 0o700, "y", nil); err == nil {
		t.Fatal("writing under a file succeeded")
	}
}

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	var oldest []string
	for i := range 12 {
		name := string(rune('a'+i)) + ".sim"
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			os.Chtimes(f, old, old)
			oldest = append(oldest, name)
		}
	}
	for _, other := range []string{"keep.graph", ".tmp-123.sim"} {
		f := filepath.Join(dir, other)
		os.WriteFile(f, nil, 0o644)
		os.Chtimes(f, old, old)
	}
	cachedir.Prune(dir, ".sim", 8)
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	for _, gone := range oldest {
		if slices.Contains(names, gone) {
			t.Errorf("kept %s, one of the oldest", gone)
		}
	}
	if len(names) != 8+2 || !slices.Contains(names, "keep.graph") || !slices.Contains(names, ".tmp-123.sim") {
		t.Errorf("left %v: want 8 timelines, keep.graph and the hidden file", names)
	}
}
