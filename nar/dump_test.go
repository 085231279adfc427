package nar_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/nbuild/nbuild/nar"
)

type failAfter struct{ n int }

var errFull = errors.New("disk full")

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n < len(p) {
		return 0, errFull
	}
	f.n -= len(p)
	return len(p), nil
}

// TestDumpErrors: a destination that fails mid-way, and an unsupported
// file late in the tree, end DumpPath with that error.
func TestDumpErrors(t *testing.T) {
	root := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "a"), bytes.Repeat([]byte("a"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := nar.DumpPath(&failAfter{n: 300 << 10}, root); !errors.Is(err, errFull) {
		t.Errorf("failing destination: %v, want %v", err, errFull)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "zz-fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := nar.DumpPath(&buf, root); !errors.Is(err, nar.ErrUnsupported) {
		t.Errorf("tree with a FIFO: %v, want ErrUnsupported", err)
	}
}
