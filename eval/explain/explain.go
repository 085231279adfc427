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
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/store"
)

// ErrNotInClosure is returned by Why when the target is not reachable
// from the roots.
var ErrNotInClosure = errors.New("explain: path is not in the closure of the roots")

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
