package plan

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store"
)

// TestExistingCached: the cached answer equals existing's, is reused while
// the directory is unchanged, and is recomputed when an entry is added or
// removed; a directory changed within the last second is not cached.
func TestExistingCached(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	cache := filepath.Join(t.TempDir(), "cache")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var paths []store.Path
	for i, name := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i"} {
		p := store.MustParsePath("/nix/store/" + "0123456789abcdfghijklmnpqrsvwxyz"[i:] + "0123456789abcdfghijklmnpqrsvwxyz"[:i] + "-" + name)
		paths = append(paths, p)
		if i%3 != 1 {
			if err := os.WriteFile(filepath.Join(dir, p.Base()), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	old := time.Now().Add(-time.Hour)
	age := func() { // make the directory's last change old enough to cache
		t.Helper()
		if err := os.Chtimes(dir, old, old); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		t.Helper()
		want, err := existing(dir, paths)
		if err != nil {
			t.Fatal(err)
		}
		got, err := existingCached(cache, dir, paths)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("%s: existingCached = %v, %v; existing = %v", when, got, err, want)
		}
	}
	cached := func() []string {
		files, _ := filepath.Glob(filepath.Join(cache, "exists-*"))
		return files
	}

	check("fresh directory")
	if f := cached(); len(f) != 0 {
		t.Fatalf("a directory changed just now was cached: %v", f)
	}
	age()
	check("first")
	f := cached()
	if len(f) != 1 {
		t.Fatalf("no cache written: %v", f)
	}
	// A hit: the cache file's answer is used (doctor it to tell).
	data, _ := os.ReadFile(f[0])
	data[len(data)-2] ^= 0xff
	if err := os.WriteFile(f[0], data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := existingCached(cache, dir, paths); len(got) == 6 {
		t.Fatal("the cache was not read")
	}
	// An entry added changes the directory: recomputed.
	if err := os.WriteFile(filepath.Join(dir, paths[1].Base()), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	age()
	check("after adding")
	if err := os.Remove(filepath.Join(dir, paths[0].Base())); err != nil {
		t.Fatal(err)
	}
	age()
	check("after removing")
	// Another list of paths has its own entry; a truncated file is a miss.
	check2 := paths[:4]
	got, err := existingCached(cache, dir, check2)
	if want, _ := existing(dir, check2); err != nil || !slices.Equal(got, want) {
		t.Errorf("sub-list: %v, %v; want %v", got, err, want)
	}
	for _, f := range cached() {
		os.Truncate(f, 20)
	}
	check("truncated cache")
}
