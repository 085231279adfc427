package graph

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestStoreDirRead reads files around the buffer's sizes, with and without
// full: one read(2) per file must still return the whole file.
func TestStoreDirRead(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "nix", "store")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sizes := []int{0, 1, 16<<10 - 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 200 << 10}
	for _, n := range sizes {
		data := bytes.Repeat([]byte("Derive(x)"), n/9+1)[:n]
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(n)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d, err := openStoreDir(root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var name nameBuf
	var buf []byte
	for _, full := range []bool{false, true} {
		for _, n := range sizes {
			got, err := d.read(fmt.Sprint(n), buf, &name, full)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != n || !bytes.Equal(got, bytes.Repeat([]byte("Derive(x)"), n/9+1)[:n]) {
				t.Errorf("full=%v: file of %d bytes read as %d", full, n, len(got))
			}
			buf = got[:0]
		}
	}
	if _, err := d.read("missing", buf, &name, false); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}
