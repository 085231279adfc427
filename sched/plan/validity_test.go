package plan

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nbuild/nbuild/store"
)

// TestExisting finds which store paths exist in a directory, both by
// looking each up (few paths) and by listing it (many). Entries that are
// not store paths, and lock files beside paths (the same digest, another
// name), make no path exist.
func TestExisting(t *testing.T) {
	dir := t.TempDir()
	var paths, want []store.Path
	for i := range 40 {
		p := store.MustParsePath(fmt.Sprintf("/nix/store/%032d-p%d", i, i))
		paths = append(paths, p)
		if i%3 == 0 {
			want = append(want, p)
			if err := os.WriteFile(filepath.Join(dir, p.Base()), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if i%3 != 2 {
			if err := os.WriteFile(filepath.Join(dir, p.Base()+".lock"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Mkdir(filepath.Join(dir, ".links"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{3, 40} { // lookups (4096/64 > 4*3), then a listing
		var w []store.Path
		for _, p := range want {
			if slices.Contains(paths[:n], p) {
				w = append(w, p)
			}
		}
		if got, err := existing(dir, paths[:n]); err != nil || !slices.Equal(got, w) {
			t.Errorf("%d paths: existing = %v, %v; want %v", n, got, err, w)
		}
	}
	if got, err := existing(filepath.Join(dir, "missing"), paths); err == nil {
		t.Errorf("missing directory: %v, no error", got)
	}
}
