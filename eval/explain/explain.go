// Package explain answers the two questions users ask of a build plan:
// why is a path in the closure at all (Why: the shortest dependency chains
// from the roots to it), and why does a change rebuild so much (Diff: which
// derivations differ between two plans, and the few root causes every
// other difference follows from).
//
// Both read derivations through a Loader, so they work on the real store,
// a chroot store, or a cache, and read only the derivations they need.
package explain

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/store"
)

// ErrNotInClosure is returned by Why when the target is not reachable
// from the roots.
var ErrNotInClosure = errors.New("explain: path is not in the closure of the roots")

// MissingError reports a derivation that is not in the store a Loader
// reads. It wraps fs.ErrNotExist.
type MissingError struct {
	Path  store.Path
	Store string // the chroot store's root; "" for /nix/store
}

func (e *MissingError) Error() string {
	if e.Store == "" {
		return fmt.Sprintf("derivation '%s' does not exist in the store", e.Path)
	}
	return fmt.Sprintf("derivation '%s' does not exist in the store at %s", e.Path, e.Store)
}

func (e *MissingError) Unwrap() error { return fs.ErrNotExist }

// Loader returns the parsed derivation at a .drv path.
type Loader func(p store.Path) (*drv.Derivation, error)

// DirLoader reads derivations from a store directory: root "" is the real
// /nix/store, otherwise a chroot store root whose files are at
// ROOT/nix/store. Results are memoised; it is safe for concurrent use.
func DirLoader(root string) Loader {
	var mu sync.Mutex
	memo := map[store.Path]*drv.Derivation{}
	return func(p store.Path) (*drv.Derivation, error) {
		mu.Lock()
		d, ok := memo[p]
		mu.Unlock()
		if ok {
			return d, nil
		}
		file := p.String()
		if root != "" {
			file = filepath.Join(root, file)
		}
		data, err := os.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &MissingError{Path: p, Store: root}
		}
		if err != nil {
			return nil, fmt.Errorf("reading derivation %s: %w", p, err)
		}
		d, err = drv.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("parsing derivation %s: %w", p, err)
		}
		mu.Lock()
		memo[p] = d
		mu.Unlock()
		return d, nil
	}
}

// GraphLoader is DirLoader for a whole closure known in advance (Diff's
// two sets of roots): the closures of roots are read and parsed at once
// by the parallel graph loader (eval/graph, keeping the derivations)
// instead of file by file as Diff walks them, and served from memory. A
// path outside them is read by DirLoader, and so is everything when the
// graph cannot be loaded, so errors are the ones DirLoader reports.
func GraphLoader(ctx context.Context, root string, roots []store.Path) Loader {
	dir := DirLoader(root)
	g, err := graph.Load(ctx, root, roots, graph.Options{KeepDerivations: true})
	if err != nil {
		return dir
	}
	return func(p store.Path) (*drv.Derivation, error) {
		if id, ok := g.Lookup(p); ok {
			return g.Derivation(id)
		}
		return dir(p)
	}
}
