package drv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/nbuild/nbuild/store"
)

// FileLoader returns a Loader reading .drv files from a store whose root is
// root: "" or "/" for the real /nix/store, or the root directory of a
// chroot store (which keeps its files under root/nix/store). The path
// given to the Loader must be a store path; errors name it. The Loader is
// safe for concurrent use.
func FileLoader(root string) Loader {
	var pool sync.Pool
	return func(drvPath string) (*Derivation, error) {
		if _, err := store.ParsePath(drvPath); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(filepath.Join(root, drvPath))
		if err != nil {
			return nil, err
		}
		p, _ := pool.Get().(*Parser)
		if p == nil {
			p = new(Parser)
		}
		// data is this call's own buffer: the result may keep it.
		d, err := p.ParseShared(data)
		p.reset()
		pool.Put(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", drvPath, err)
		}
		return d, nil
	}
}

// Closure loads the derivations at roots and, recursively, every input
// derivation they need, as `nix show-derivation -r` collects them. It also
// follows inputSrcs that are .drv files (a derivation's path used as a
// string); references of other sources are not known from the .drv files
// alone and are not followed. It stops with ctx's error when ctx is done.
func Closure(ctx context.Context, roots []string, load Loader) (map[string]*Derivation, error) {
	res := make(map[string]*Derivation)
	todo := append([]string(nil), roots...)
	sort.Strings(todo)
	for len(todo) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if _, ok := res[p]; ok {
			continue
		}
		d, err := load(p)
		if err != nil {
			return nil, err
		}
		res[p] = d
		var buf [len(store.StoreDir) + 1 + store.HashPartLen + 1 + store.MaxNameLen]byte
		for _, in := range d.InputDrvs {
			// Looked up by its text without making a string of it.
			if _, ok := res[string(in.Path.AppendTo(buf[:0]))]; !ok {
				todo = append(todo, in.Path.String())
			}
		}
		for _, s := range d.InputSrcs {
			if _, ok := res[s]; !ok && strings.HasSuffix(s, ".drv") {
				todo = append(todo, s)
			}
		}
	}
	return res, nil
}
