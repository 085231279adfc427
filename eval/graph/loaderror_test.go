package graph_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/store"
)

// TestLoadErrorMessage: a missing input and a corrupt .drv are said in the
// user's terms, each once: no package prefixes stacked on each other.
func TestLoadErrorMessage(t *testing.T) {
	const hello = "/nix/store/y87xq6mpa4a03nqghrinyx9grzjyds06-hello-aarch64-unknown-linux-gnu-2.12.1.drv"
	root := t.TempDir()
	dir := filepath.Join(root, "nix", "store")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../../testdata/store" + hello)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, hello), data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = graph.Load(context.Background(), root, []store.Path{store.MustParsePath(hello)}, graph.Options{})
	var le *graph.LoadError
	if !errors.As(err, &le) || !errors.Is(err, fs.ErrNotExist) || le.From.String() != hello || le.Root != root {
		t.Fatalf("got %v", err)
	}
	want := "', an input of '" + hello + "', does not exist in the store at " + root
	if msg := err.Error(); !strings.HasPrefix(msg, "derivation '/nix/store/") || !strings.HasSuffix(msg, want) {
		t.Errorf("message %q", msg)
	}

	bad := "/nix/store/00000000000000000000000000000000-bad.drv"
	if err := os.WriteFile(filepath.Join(root, bad), []byte("Derive(garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = graph.Load(context.Background(), root, []store.Path{store.MustParsePath(bad)}, graph.Options{})
	if msg := err.Error(); !strings.HasPrefix(msg, "derivation '"+bad+"': drv: invalid derivation") || strings.Count(msg, "graph:") != 0 {
		t.Errorf("corrupt .drv: %q", msg)
	}
}
