package graphgen

import (
	"errors"
	"os/exec"
	"testing"
)

// Without Nix, Instantiate says so in a way a caller can test, and writes
// nothing.
func TestInstantiateWithoutNix(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	dir := t.TempDir() + "/graph"
	_, err := Instantiate(t.Context(), dir, Params{N: 100})
	if !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("want exec.ErrNotFound, got %v", err)
	}
	if _, ok := CachedRoot(dir, Params{N: 100}); ok {
		t.Fatal("a failed Instantiate left a cached root")
	}
}
