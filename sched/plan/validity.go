package plan

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/location"
)

// Validity is what the store says about a closure's outputs.
type Validity struct {
	Valid         map[store.Path]bool
	Substitutable map[store.Path]bool
	Size          map[store.Path]uint64 // NAR size of valid paths, when known
	Source        string                // "nix-daemon" or "files under ROOT"
}

// ValidityOptions tune QueryValidity.
type ValidityOptions struct {
	// Store is the store asked: a chroot store's files are looked at (it
	// has no daemon here), a daemon store is asked through its daemon.
	// The zero value is the machine's nix-daemon.
	Store location.Location
	// Options are nix.conf settings for the daemon (nix --option).
	Options map[string]string
	// NoSubstituters skips asking what can be substituted (QueryMissing
	// walks every .drv of the closure in the daemon: most of the query).
	NoSubstituters bool
	// CacheDir keeps which outputs exist on disk between runs
	// (existingCached); "" for none.
	CacheDir string
}

// QueryValidity asks the store which outputs of g are valid or
// substitutable. A chroot store (opts.Store) has no daemon here: an output
// is taken as valid when its path exists under the root. The machine's
// store is asked through the local nix-daemon (QueryValidPaths for the
// outputs present in /nix/store, QueryPathInfo for sizes, QueryMissing for
// substitutes of roots).
func QueryValidity(ctx context.Context, g *graph.Graph, roots []graph.NodeID, opts ValidityOptions) (*Validity, error) {
	options := opts.Options
	loc := opts.Store
	if loc.Kind == 0 {
		loc = location.Location{Kind: location.Daemon, URI: "daemon", Socket: location.DefaultSocket}
	}
	root := ""
	switch loc.Kind {
	case location.Chroot:
		root = loc.Root
	case location.Daemon:
	default:
		return nil, fmt.Errorf("store '%s': a plan needs the local nix-daemon or a chroot store directory", loc)
	}
	vi := &Validity{Valid: map[store.Path]bool{}, Substitutable: map[store.Path]bool{}, Size: map[store.Path]uint64{}}
	n := 0
	for id := 0; id < g.Len(); id++ {
		n += len(g.Node(graph.NodeID(id)).Outputs)
	}
	outs := make([]store.Path, 0, n)
	for id := 0; id < g.Len(); id++ {
		for _, o := range g.Node(graph.NodeID(id)).Outputs {
			if !o.Path.IsZero() {
				outs = append(outs, o.Path)
			}
		}
	}
	if root != "" {
		vi.Source = "files under " + root
		// A store directory that cannot be read has nothing valid.
		valid, _ := existingCached(opts.CacheDir, filepath.Join(root, store.StoreDir), outs)
		for _, p := range valid {
			vi.Valid[p] = true
		}
		return vi, nil
	}
	vi.Source = "nix-daemon"
	// A valid path exists in the store directory, so only outputs that do
	// need the daemon's word (a path on disk may still be invalid, e.g.
	// left by an interrupted build). One local lookup each is far cheaper
	// than the daemon's, and a plan of nothing built asks it nothing.
	// If the directory cannot be read, the daemon is asked about all.
	if onDisk, err := existingCached(opts.CacheDir, store.StoreDir, outs); err == nil {
		outs = onDisk
	}
	if len(outs) == 0 && opts.NoSubstituters {
		return vi, nil
	}
	c, err := loc.Dial(ctx, daemon.Options{Settings: daemon.Settings{Overrides: options}})
	if err != nil {
		return nil, fmt.Errorf("asking the nix-daemon which paths are valid: %w", err)
	}
	defer c.Close()
	valid, err := c.QueryValidPaths(ctx, outs, false)
	if err != nil {
		return nil, err
	}
	for _, p := range valid {
		vi.Valid[p] = true
	}
	if infos, err := c.QueryPathInfos(ctx, valid); err == nil {
		for _, pi := range infos {
			if pi != nil {
				vi.Size[pi.Path] = pi.NarSize
			}
		}
	}
	if opts.NoSubstituters {
		return vi, nil
	}
	var targets []store.DerivedPath
	for _, r := range roots {
		targets = append(targets, store.BuiltPath(g.Node(r).Path))
	}
	if m, err := c.QueryMissing(ctx, targets); err == nil {
		for _, p := range m.WillSubstitute {
			vi.Substitutable[p] = true
		}
	}
	return vi, nil
}

// existing returns the paths that exist in the store directory dir:
// thousands of lookups are most of a warm plan's time. Measured on ext4
// (about 100 directory bytes per entry), a listing costs ~0.6 µs per entry
// and a lookup ~1.6 µs per path even on two goroutines, so the directory is
// listed unless it has more than about 2.5 entries per path (by its size
// in bytes, a rough count); otherwise the lookups run on one goroutine per
// CPU, relative to the directory (one path component each). A directory
// that cannot be read, or a lookup failing other than with "no such file",
// is an error.
func existing(dir string, paths []store.Path) ([]store.Path, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	exists := make([]bool, len(paths))
	if st, err := f.Stat(); err == nil && st.Size()/64 <= 4*int64(len(paths)) {
		names, err := f.Readdirnames(-1)
		if err != nil {
			return nil, err
		}
		in := make(map[string]struct{}, len(names))
		for _, n := range names {
			in[n] = struct{}{}
		}
		var buf []byte
		for i, p := range paths {
			buf = p.AppendBase(buf[:0])
			_, exists[i] = in[string(buf)] // no allocation for the lookup
		}
	} else {
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, err
		}
		defer root.Close()
		workers := min(runtime.GOMAXPROCS(0), len(paths)/256+1)
		errs := make([]error, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < len(paths); i += workers {
					_, err := root.Lstat(paths[i].Base())
					exists[i] = err == nil
					if err != nil && !errors.Is(err, fs.ErrNotExist) && errs[w] == nil {
						errs[w] = err
					}
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	var out []store.Path
	for i, ok := range exists {
		if ok {
			out = append(out, paths[i])
		}
	}
	return out, nil
}
