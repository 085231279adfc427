package plan

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/location"
)

// State is what a plan does with a derivation.
type State uint8

const (
	Build         State = iota // must be built
	Valid                      // every output is valid already
	Substitutable              // missing outputs can be substituted
	Unneeded                   // only an input of valid or substitutable derivations
	Unbuildable                // must be built, and no builder can
	Blocked                    // must be built, but depends on an unbuildable one
)

func (s State) String() string {
	return [...]string{"build", "valid", "substitutable", "unneeded", "unbuildable", "blocked"}[s]
}

// Plan is a loaded closure with, for every node, what happens to it
// and where it would be built. Per-node answers are read with State,
// Builder, Reason and Expected.
type Plan struct {
	// Graph is the closure planned; Roots are its roots.
	Graph *graph.Graph
	Roots []graph.NodeID
	// Machines are the builders, the local machine first.
	Machines []sched.Machine
	// Timeline is the simulated run of the nodes to build on Machines
	// with the expected durations; nil when nothing can be built.
	Timeline *sched.Timeline
	// Sched is the scheduler's plan of the nodes to build and JobNodes
	// maps its job ids to nodes. Nil when nothing can be built.
	Sched    *sched.Plan
	JobNodes []graph.NodeID
	// Source is where states came from: "nix-daemon" or "files under ROOT".
	Source string

	state   []State
	builder []int                   // machine index for nodes to build, -1 otherwise
	reason  map[int]string          // node -> why it cannot be built
	why     map[graph.NodeID]string // node -> why its builder (BuilderReason)
	// outBytes is the NAR size of a node's valid outputs, when known.
	outBytes []uint64
	// expected is the expected build time of a node, known[node] when it
	// comes from recorded builds rather than the default.
	expected []time.Duration
	known    []bool
}

// State is what the plan does with node id.
func (p *Plan) State(id graph.NodeID) State { return p.state[id] }

// Builder is the index in Machines of the builder node id is assigned to,
// or -1 when it is not to be built (or cannot be).
func (p *Plan) Builder(id graph.NodeID) int { return p.builder[id] }

// Reason says why node id cannot be built; "" unless it is Unbuildable.
func (p *Plan) Reason(id graph.NodeID) string { return p.reason[int(id)] }

// Expected is the expected build time of node id, and whether it comes
// from recorded builds (true) or the default duration (false).
func (p *Plan) Expected(id graph.NodeID) (time.Duration, bool) { return p.expected[id], p.known[id] }

// ValidBytes is the NAR size of node id's valid outputs, when known.
func (p *Plan) ValidBytes(id graph.NodeID) uint64 { return p.outBytes[id] }

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

// Options are the inputs of New besides the graph and its validity.
type Options struct {
	// Machines are the builders, the local machine first.
	Machines []sched.Machine
	// Duration returns the recorded build time of a derivation name; nil
	// for none.
	Duration func(name string) (time.Duration, bool)
	// DefaultDuration is assumed for derivations never built before,
	// except those Nix builds trivially (TrivialDuration).
	DefaultDuration time.Duration
}

// New decides each node's state and builder. Nodes are needed from
// the roots down: a needed node whose outputs are all valid (or can be
// substituted) needs none of its inputs; one that must be built needs all
// of them. Nodes to build are planned with the scheduler; those no builder
// can take are unbuildable, and everything that needs them is blocked.
func New(g *graph.Graph, vi *Validity, opts Options) (*Plan, error) {
	n := g.Len()
	p := &Plan{
		Graph: g, Roots: g.Roots(), Machines: opts.Machines, Source: vi.Source,
		state: make([]State, n), builder: make([]int, n), reason: map[int]string{}, why: map[graph.NodeID]string{},
		outBytes: make([]uint64, n), expected: make([]time.Duration, n), known: make([]bool, n),
	}
	needed := make([]bool, n)
	for _, r := range p.Roots {
		needed[r] = true
	}
	// Node ids are topological (inputs first), so walking down from the
	// highest id visits every referrer before its inputs.
	for id := n - 1; id >= 0; id-- {
		node := g.Node(graph.NodeID(id))
		p.builder[id] = -1
		allValid, allAvail := len(node.Outputs) > 0, len(node.Outputs) > 0
		for _, o := range node.Outputs {
			if o.Path.IsZero() || !vi.Valid[o.Path] {
				allValid = false
			}
			if o.Path.IsZero() || !(vi.Valid[o.Path] || vi.Substitutable[o.Path]) {
				allAvail = false
			}
			p.outBytes[id] += vi.Size[o.Path]
		}
		switch {
		case !needed[id]:
			p.state[id] = Unneeded
		case allValid:
			p.state[id] = Valid
		case allAvail:
			p.state[id] = Substitutable
		default:
			p.state[id] = Build
			for _, e := range node.Inputs {
				needed[e.To] = true
			}
		}
		d, ok := time.Duration(0), false
		if opts.Duration != nil {
			d, ok = opts.Duration(node.Name())
		}
		if !ok {
			d = opts.DefaultDuration
			if trivial(node) {
				d = min(d, TrivialDuration)
			}
		}
		p.expected[id], p.known[id] = d, ok
	}
	return p, p.schedule()
}

// schedule assigns builders to the nodes to build by simulating the
// scheduler with the expected durations; unbuildable nodes and their
// referrers are taken out first.
func (p *Plan) schedule() error {
	g := p.Graph
	jobOf := make([]int, g.Len())
	// Sized up front: growing thousands of jobs by append was a tenth of
	// a warm plan's page faults.
	n, edges := 0, 0
	for id, st := range p.state {
		if st == Build {
			n++
			edges += len(g.Node(graph.NodeID(id)).Inputs)
		}
	}
	jobs := make([]sched.Job, 0, n)
	deps := make([]int, 0, edges) // every job's Deps, back to back
	nodes := make([]graph.NodeID, 0, n)
	for id := 0; id < g.Len(); id++ {
		jobOf[id] = -1
		if p.state[id] != Build {
			continue
		}
		node := g.Node(graph.NodeID(id))
		plat, err := sched.NewPlatform(node.System, node.RequiredFeatures...)
		if err != nil {
			return fmt.Errorf("derivation %s: %w", node.Path, err)
		}
		if why := sched.Why(plat, p.Machines); why != "" {
			p.state[id] = Unbuildable
			p.reason[id] = why
			continue
		}
		job := sched.Job{Name: node.Name(), Platform: plat, PreferLocal: node.PreferLocalBuild, Expected: p.expected[id]}
		blocked := false
		start := len(deps)
		for _, e := range node.Inputs {
			switch p.state[e.To] {
			case Unbuildable, Blocked:
				blocked = true
			case Build:
				deps = append(deps, jobOf[e.To])
			}
		}
		if blocked {
			p.state[id] = Blocked
			deps = deps[:start]
			continue
		}
		if len(deps) > start {
			job.Deps = deps[start:len(deps):len(deps)]
		}
		jobOf[id] = len(jobs)
		jobs = append(jobs, job)
		nodes = append(nodes, graph.NodeID(id))
	}
	if len(jobs) == 0 {
		return nil
	}
	plan, err := sched.NewPlan(jobs, p.Machines)
	if err != nil {
		return err
	}
	p.Sched, p.JobNodes = plan, nodes
	dur := make([]time.Duration, len(jobs))
	for i, id := range nodes {
		dur[i] = p.expected[id]
	}
	tl, err := sched.SimulatePlan(plan, dur, sched.SimOptions{})
	if err != nil {
		return err
	}
	p.Timeline = tl
	at := make(map[int][2]time.Duration, len(jobs))
	for _, e := range tl.Entries {
		if e.Outcome == sched.Built.String() {
			p.builder[nodes[e.Job]] = e.Machine
			at[e.Job] = [2]time.Duration{e.Start, e.End}
		}
	}
	p.assignReasons(at)
	return nil
}

// Unbuildable lists the unbuildable nodes, sorted by path.
func (p *Plan) Unbuildable() []graph.NodeID {
	var out []graph.NodeID
	for id, s := range p.state {
		if s == Unbuildable {
			out = append(out, graph.NodeID(id))
		}
	}
	sort.Slice(out, func(i, j int) bool { return p.Graph.Node(out[i]).Path.Compare(p.Graph.Node(out[j]).Path) < 0 })
	return out
}

// CriticalPath is the longest chain of nodes to build, by expected time.
func (p *Plan) CriticalPath() ([]graph.NodeID, time.Duration) {
	return p.Graph.CriticalPath(func(id graph.NodeID) time.Duration {
		if p.state[id] != Build {
			return 0
		}
		return p.expected[id]
	})
}

// Counts are how many derivations of a group are in each state, and the
// NAR bytes of the valid ones' outputs when known.
type Counts struct {
	Valid, Substitutable, Build, Unneeded, Unbuildable, Blocked int
	ValidBytes                                                  uint64
}

// CountBySystem counts the plan's derivations per system.
func (p *Plan) CountBySystem() map[string]*Counts {
	by := map[string]*Counts{}
	for id, st := range p.state {
		sys := p.Graph.Node(graph.NodeID(id)).System
		c := by[sys]
		if c == nil {
			c = &Counts{}
			by[sys] = c
		}
		switch st {
		case Valid:
			c.Valid++
			c.ValidBytes += p.outBytes[id]
		case Substitutable:
			c.Substitutable++
		case Build:
			c.Build++
		case Unneeded:
			c.Unneeded++
		case Unbuildable:
			c.Unbuildable++
		case Blocked:
			c.Blocked++
		}
	}
	return by
}

// BuildsByBuilder counts the derivations assigned to each machine (by
// index in Machines), per system.
func (p *Plan) BuildsByBuilder() []map[string]int {
	by := make([]map[string]int, len(p.Machines))
	for id, b := range p.builder {
		if b < 0 {
			continue
		}
		if by[b] == nil {
			by[b] = map[string]int{}
		}
		by[b][p.Graph.Node(graph.NodeID(id)).System]++
	}
	return by
}
