package nar_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/store"
)

// Hash a directory as Nix does (`nix-hash --type sha256 --base32 DIR`):
// the SHA-256 of its NAR serialisation, which is a store path's narHash.
func ExampleHashPath() {
	dir, err := os.MkdirTemp("", "nar-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	tree := filepath.Join(dir, "tree")
	must := func(err error) {
		if err != nil {
			log.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(tree, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(tree, "greeting"), []byte("hello\n"), 0o644))
	must(os.WriteFile(filepath.Join(tree, "sub", "run"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.Symlink("greeting", filepath.Join(tree, "link")))

	sum, size, err := nar.HashPath(tree)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("sha256:%s (%d bytes of NAR)\n", store.EncodeNix32(sum[:]), size)
	// Output: sha256:1f7vfcyhrnl943g1i1wvx1bhicv3wkga4b3a01c5869pbqzijcl2 (888 bytes of NAR)
}
