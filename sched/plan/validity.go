package plan

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/location"
	"github.com/nbuild/nbuild/store/metacache"
)

// Validity is what the store says about a closure's outputs.
type Validity struct {
	Valid         map[store.Path]bool
	Substitutable map[store.Path]bool
	Size          map[store.Path]uint64 // NAR size of valid paths, when known
	Source        string                // "nix-daemon" or "files under ROOT"
	// SubstitutesUnknown says why substitutability is not known (the
	// substituters did not answer in time); "" when it is. Outputs not
	// known to be substitutable are then planned as built.
	SubstitutesUnknown string
	// Asked counts the outputs whose substitutability the daemon answered,
	// Remembered those answered from the metadata cache.
	Asked, Remembered int

	substKey        string       // the substituters the answers are for
	asked, answered []store.Path // new answers, for Remember
	unreachable     time.Time    // when the substituters did not answer
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
	// Substituters are the binary caches the daemon asks
	// (Settings.Substituters); remembered answers are kept per set.
	Substituters []string
	// Cache holds answers about substitutes from earlier runs (nil:
	// none): the daemon is asked only about outputs it has no answer for
	// yet, and not at all while the substituters recently failed to answer.
	// New answers are stored by Validity.Remember.
	Cache *metacache.Cache
	// SubstituteTimeout bounds each wait for the daemon's substituters.
	// Zero: DefaultSubstituteTimeout.
	SubstituteTimeout time.Duration
}

// DefaultSubstituteTimeout is how long a plan waits for the daemon's
// substituters to answer before it reports substitutes as unknown. Nix
// 2.8 waits about 5 s for an unreachable cache.nixos.org on every query.
const DefaultSubstituteTimeout = 3 * time.Second

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
	if err := vi.querySubstitutes(ctx, c, g, roots, opts); err != nil {
		return nil, err
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
		// Keyed by digest: decoding each entry's hash part once is far
		// cheaper than encoding every path's (nix32, a character at a
		// time: 1.4 µs of a 100,000-derivation cold plan per output).
		// Entries that are not store paths are no output's. A digest can
		// name more than one entry (a build's "<hash>-<name>.lock" beside
		// its output): the others go to a second set.
		in := make(map[[store.DigestSize]byte]string, len(names))
		var more map[store.Path]struct{}
		for _, n := range names {
			p, err := store.ParseBase(n)
			if err != nil {
				continue
			}
			if _, dup := in[p.Digest()]; !dup {
				in[p.Digest()] = p.Name()
				continue
			}
			if more == nil {
				more = map[store.Path]struct{}{}
			}
			more[p] = struct{}{}
		}
		for i, p := range paths {
			name, ok := in[p.Digest()]
			if exists[i] = ok && name == p.Name(); ok && !exists[i] && more != nil {
				_, exists[i] = more[p]
			}
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

// querySubstitutes asks which missing outputs can be substituted. The
// closure is walked from the roots down as Nix's queryMissing walks it (a
// node whose outputs are all valid or substitutable needs none of its
// inputs), first with the answers remembered from earlier runs; the needed
// nodes still unanswered go to the daemon's QueryMissing in one round
// trip (it asks its substituters in parallel, with Nix's own rules),
// bounded by opts.SubstituteTimeout. When the substituters do not answer
// in time, what is not known stays unknown.
func (vi *Validity) querySubstitutes(ctx context.Context, c *daemon.Conn, g *graph.Graph, roots []graph.NodeID, opts ValidityOptions) error {
	vi.substKey = strings.Join(opts.Substituters, " ")
	timeout := opts.SubstituteTimeout
	if timeout <= 0 {
		timeout = DefaultSubstituteTimeout
	}
	if at, ok := opts.Cache.Unreachable(vi.substKey); ok {
		vi.SubstitutesUnknown = fmt.Sprintf("the substituters (%s) did not answer %s ago; they are not asked again for %s",
			vi.substKey, time.Since(at).Round(time.Second), metacache.UnreachableTTL)
		return nil
	}
	answered := map[store.Path]bool{}
	for pass := 0; pass < 2; pass++ {
		unanswered := vi.walkNeeded(g, roots, opts.Cache, answered)
		if len(unanswered) == 0 {
			return nil
		}
		targets := make([]store.DerivedPath, len(unanswered))
		for i, id := range unanswered {
			targets[i] = store.BuiltPath(g.Node(id).Path)
		}
		qctx, cancel := context.WithTimeout(ctx, timeout)
		m, err := c.QueryMissing(qctx, targets)
		cancel()
		if err != nil {
			if ctx.Err() == nil && errors.Is(qctx.Err(), context.DeadlineExceeded) {
				vi.SubstitutesUnknown = fmt.Sprintf("the nix-daemon's substituters (%s) did not answer within %s; "+
					"plan offline with --offline or --option substituters ''", vi.substKey, timeout)
				vi.unreachable = time.Now()
				return nil
			}
			return fmt.Errorf("asking the nix-daemon what its substituters have: %w", err)
		}
		// What the daemon will substitute can be; the outputs of what it
		// will build cannot (it builds only what it cannot substitute).
		for _, p := range m.WillSubstitute {
			vi.Substitutable[p] = true
			answered[p] = true
			vi.asked = append(vi.asked, p)
			vi.answered = append(vi.answered, p)
		}
		for _, d := range m.WillBuild {
			id, ok := g.Lookup(d)
			if !ok {
				continue
			}
			for _, o := range g.Node(id).Outputs {
				if !o.Path.IsZero() && !answered[o.Path] {
					answered[o.Path] = true
					vi.asked = append(vi.asked, o.Path)
				}
			}
		}
		vi.Asked = len(vi.asked)
	}
	return nil
}

// walkNeeded walks the closure from the roots as a plan needs it, with
// the substitutability known so far (remembered in cache, or answered in
// this run), and returns the needed nodes whose missing outputs have no
// answer yet. A node that may be substitutable stops the walk there.
func (vi *Validity) walkNeeded(g *graph.Graph, roots []graph.NodeID, cache *metacache.Cache, answered map[store.Path]bool) []graph.NodeID {
	seen := make([]bool, g.Len())
	var frontier, unanswered []graph.NodeID
	for _, r := range roots {
		if !seen[r] {
			seen[r] = true
			frontier = append(frontier, r)
		}
	}
	for len(frontier) > 0 {
		var ask []store.Path
		for _, id := range frontier {
			for _, o := range g.Node(id).Outputs {
				if !o.Path.IsZero() && !vi.Valid[o.Path] && !answered[o.Path] {
					ask = append(ask, o.Path)
				}
			}
		}
		remembered := cache.Substitutable(vi.substKey, ask)
		vi.Remembered += len(remembered)
		for p, yes := range remembered {
			answered[p] = true
			if yes {
				vi.Substitutable[p] = true
			}
		}
		var next []graph.NodeID
		for _, id := range frontier {
			node := g.Node(id)
			avail, known := len(node.Outputs) > 0, true
			for _, o := range node.Outputs {
				avail = avail && !o.Path.IsZero() && (vi.Valid[o.Path] || vi.Substitutable[o.Path])
				known = known && (o.Path.IsZero() || vi.Valid[o.Path] || answered[o.Path])
			}
			if avail {
				continue
			}
			if !known {
				// The daemon's walk from here covers its inputs.
				unanswered = append(unanswered, id)
				continue
			}
			for _, e := range node.Inputs {
				if !seen[e.To] {
					seen[e.To] = true
					next = append(next, e.To)
				}
			}
		}
		frontier = next
	}
	return unanswered
}

// HasNewAnswers reports whether Remember has anything to store.
func (vi *Validity) HasNewAnswers() bool { return len(vi.asked) > 0 || !vi.unreachable.IsZero() }

// Remember stores the substitutability answers this query got from the
// daemon (or that its substituters did not answer) in c, a writable
// metadata cache, so the next plan need not ask again.
func (vi *Validity) Remember(c *metacache.Cache) error {
	if !vi.unreachable.IsZero() {
		if err := c.PutUnreachable(vi.substKey, vi.unreachable); err != nil {
			return err
		}
	}
	return c.PutSubstitutable(vi.substKey, vi.asked, vi.answered)
}
