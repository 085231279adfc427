package metacache

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store"
)

// TestSubstitutable remembers positive and negative answers per set of
// substituters, and that substituters did not answer; a read-only open
// sees them and writes nothing.
func TestSubstitutable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	c, _ := openTest(t, dir, Options{})
	a := store.MustParsePath("/nix/store/00000000000000000000000000000000-a")
	b := store.MustParsePath("/nix/store/11111111111111111111111111111111-b")
	u := store.MustParsePath("/nix/store/22222222222222222222222222222222-u")
	const key = "https://cache.example"
	if err := c.PutSubstitutable(key, []store.Path{a, b}, []store.Path{a}); err != nil {
		t.Fatal(err)
	}
	got := c.Substitutable(key, []store.Path{a, b, u})
	if len(got) != 2 || !got[a] || got[b] {
		t.Errorf("answers %v, want a yes, b no, u unknown", got)
	}
	if other := c.Substitutable("https://other.example", []store.Path{a}); len(other) != 0 {
		t.Errorf("answers leak across substituters: %v", other)
	}
	if _, ok := c.Unreachable(key); ok {
		t.Error("unreachable before anything failed")
	}
	at := time.Unix(1700000000, 123456789)
	if err := c.PutUnreachable(key, at); err != nil {
		t.Fatal(err)
	}
	if when, ok := c.Unreachable(key); !ok || !when.Equal(at) {
		t.Errorf("unreachable = %v %v, want %v", when, ok, at)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	ro, _ := openTest(t, dir, Options{ReadOnly: true})
	if got := ro.Substitutable(key, []store.Path{a}); !got[a] {
		t.Errorf("read-only open lost the answer: %v", got)
	}
	if err := ro.PutSubstitutable(key, []store.Path{u}, []store.Path{u}); err != nil {
		t.Fatal(err)
	}
	if got := ro.Substitutable(key, []store.Path{u}); len(got) != 0 {
		t.Errorf("a read-only cache stored an answer: %v", got)
	}
}
