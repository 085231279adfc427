//go:build !linux

package graph

import (
	"os"
	"path/filepath"
)

// storeDir reads .drv files with os.ReadFile (see storedir_linux.go for
// the fast path).
type storeDir struct{ dir string }

func openStoreDir(root string) (*storeDir, error) {
	dir := filepath.Join(root, "/nix/store")
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	return &storeDir{dir: dir}, nil
}

func (d *storeDir) Close() error { return nil }

type nameBuf struct{}

func (d *storeDir) read(base string, _ []byte, _ *nameBuf, _ bool) ([]byte, error) {
	return os.ReadFile(filepath.Join(d.dir, base))
}
