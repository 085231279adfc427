package main

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
	"github.com/nbuild/nbuild/store/storetest"
)

// nodeState is what a plan does with a derivation.
type nodeState uint8

const (
	stateBuild         nodeState = iota // must be built
	stateValid                          // every output is valid already
	stateSubstitutable                  // missing outputs can be substituted
	stateUnneeded                       // only an input of valid or substitutable derivations
	stateUnbuildable                    // must be built, and no builder can
	stateBlocked                        // must be built, but depends on an unbuildable one
)

func (s nodeState) String() string {
	return [...]string{"build", "valid", "substitutable", "unneeded", "unbuildable", "blocked"}[s]
}

// buildPlan is a loaded closure with, for every node, what happens to it
// and where it would be built.
type buildPlan struct {
	g        *graph.Graph
	roots    []graph.NodeID
	state    []nodeState
	machines []sched.Machine
	builder  []int          // machine index for nodes to build, -1 otherwise
	reason   map[int]string // node -> why it cannot be built
	// outBytes is the NAR size of a node's valid outputs, when known.
	outBytes []uint64
	// expected is the expected build time of a node, known[node] when it
	// comes from recorded builds rather than the default.
	expected []time.Duration
	known    []bool
	timeline *sched.Timeline
	// splan is the scheduler's plan of the nodes to build; jobNodes maps
	// its job ids to nodes. Nil when nothing can be built.
	splan    *sched.Plan
	jobNodes []graph.NodeID
	// validity is where states came from: "daemon" or "files under ROOT".
	validity string
}

// validityInfo is what the store says about a closure's outputs.
type validityInfo struct {
	valid  map[store.Path]bool
	subst  map[store.Path]bool
	size   map[store.Path]uint64
	source string
}

// queryValidity asks the store which outputs are valid or substitutable.
// A chroot store given as a directory has no daemon here: an output is
// taken as valid when its path exists under the root. The machine's store
// is asked through the local nix-daemon (QueryValidPaths for the outputs
// present in /nix/store, QueryPathInfo for sizes, QueryMissing for
// substitutes).
func queryValidity(ctx context.Context, root storeRoot, g *graph.Graph, roots []graph.NodeID, options map[string]string) (*validityInfo, error) {
	return queryStates(ctx, root, g, roots, validityOptions{options: options})
}

// validityOptions tune queryStates.
type validityOptions struct {
	options map[string]string // --option settings for the daemon
	// noSubstituters skips asking what can be substituted (QueryMissing
	// walks every .drv of the closure in the daemon: most of the query).
	noSubstituters bool
	// cacheDir keeps which outputs exist on disk between runs
	// (existingCached); "" for none.
	cacheDir string
}

// queryStates is queryValidity with options.
func queryStates(ctx context.Context, root storeRoot, g *graph.Graph, roots []graph.NodeID, opts validityOptions) (*validityInfo, error) {
	options := opts.options
	vi := &validityInfo{valid: map[store.Path]bool{}, subst: map[store.Path]bool{}, size: map[store.Path]uint64{}}
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
		vi.source = "files under " + string(root)
		// A store directory that cannot be read has nothing valid.
		valid, _ := existingCached(opts.cacheDir, filepath.Join(string(root), store.StoreDir), outs)
		for _, p := range valid {
			vi.valid[p] = true
		}
		return vi, nil
	}
	vi.source = "nix-daemon"
	// A valid path exists in the store directory, so only outputs that do
	// need the daemon's word (a path on disk may still be invalid, e.g.
	// left by an interrupted build). One local lookup each is far cheaper
	// than the daemon's, and a plan of nothing built asks it nothing.
	// If the directory cannot be read, the daemon is asked about all.
	if onDisk, err := existingCached(opts.cacheDir, store.StoreDir, outs); err == nil {
		outs = onDisk
	}
	if len(outs) == 0 && opts.noSubstituters {
		return vi, nil
	}
	c, err := daemon.Dial(ctx, storetest.DaemonSocket, daemon.Options{Settings: daemon.Settings{Overrides: options}})
	if err != nil {
		return nil, fmt.Errorf("asking the nix-daemon which paths are valid: %w", err)
	}
	defer c.Close()
	valid, err := c.QueryValidPaths(ctx, outs, false)
	if err != nil {
		return nil, err
	}
	for _, p := range valid {
		vi.valid[p] = true
	}
	if infos, err := c.QueryPathInfos(ctx, valid); err == nil {
		for _, pi := range infos {
			if pi != nil {
				vi.size[pi.Path] = pi.NarSize
			}
		}
	}
	if opts.noSubstituters {
		return vi, nil
	}
	var targets []store.DerivedPath
	for _, r := range roots {
		targets = append(targets, store.BuiltPath(g.Node(r).Path))
	}
	if m, err := c.QueryMissing(ctx, targets); err == nil {
		for _, p := range m.WillSubstitute {
			vi.subst[p] = true
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

// planOptions are the inputs of makePlan besides the graph.
type planOptions struct {
	machines []sched.Machine
	// duration returns the recorded build time of a derivation name.
	duration func(name string) (time.Duration, bool)
	// defaultDuration is assumed for derivations never built before.
	defaultDuration time.Duration
}

// makePlan decides each node's state and builder. Nodes are needed from
// the roots down: a needed node whose outputs are all valid (or can be
// substituted) needs none of its inputs; one that must be built needs all
// of them. Nodes to build are planned with the scheduler; those no builder
// can take are unbuildable, and everything that needs them is blocked.
func makePlan(g *graph.Graph, vi *validityInfo, opts planOptions) (*buildPlan, error) {
	n := g.Len()
	p := &buildPlan{
		g: g, roots: g.Roots(), machines: opts.machines, validity: vi.source,
		state: make([]nodeState, n), builder: make([]int, n), reason: map[int]string{},
		outBytes: make([]uint64, n), expected: make([]time.Duration, n), known: make([]bool, n),
	}
	needed := make([]bool, n)
	for _, r := range p.roots {
		needed[r] = true
	}
	// Node ids are topological (inputs first), so walking down from the
	// highest id visits every referrer before its inputs.
	for id := n - 1; id >= 0; id-- {
		node := g.Node(graph.NodeID(id))
		p.builder[id] = -1
		allValid, allAvail := len(node.Outputs) > 0, len(node.Outputs) > 0
		for _, o := range node.Outputs {
			if o.Path.IsZero() || !vi.valid[o.Path] {
				allValid = false
			}
			if o.Path.IsZero() || !(vi.valid[o.Path] || vi.subst[o.Path]) {
				allAvail = false
			}
			p.outBytes[id] += vi.size[o.Path]
		}
		switch {
		case !needed[id]:
			p.state[id] = stateUnneeded
		case allValid:
			p.state[id] = stateValid
		case allAvail:
			p.state[id] = stateSubstitutable
		default:
			p.state[id] = stateBuild
			for _, e := range node.Inputs {
				needed[e.To] = true
			}
		}
		d, ok := time.Duration(0), false
		if opts.duration != nil {
			d, ok = opts.duration(node.Name())
		}
		if !ok {
			d = opts.defaultDuration
		}
		p.expected[id], p.known[id] = d, ok
	}
	return p, p.schedule()
}

// schedule assigns builders to the nodes to build by simulating the
// scheduler with the expected durations; unbuildable nodes and their
// referrers are taken out first.
func (p *buildPlan) schedule() error {
	g := p.g
	jobOf := make([]int, g.Len())
	// Sized up front: growing thousands of jobs by append was a tenth of
	// a warm plan's page faults.
	n, edges := 0, 0
	for id, st := range p.state {
		if st == stateBuild {
			n++
			edges += len(g.Node(graph.NodeID(id)).Inputs)
		}
	}
	jobs := make([]sched.Job, 0, n)
	deps := make([]int, 0, edges) // every job's Deps, back to back
	nodes := make([]graph.NodeID, 0, n)
	for id := 0; id < g.Len(); id++ {
		jobOf[id] = -1
		if p.state[id] != stateBuild {
			continue
		}
		node := g.Node(graph.NodeID(id))
		plat, err := sched.NewPlatform(node.System, node.RequiredFeatures...)
		if err != nil {
			return fmt.Errorf("derivation %s: %w", node.Path, err)
		}
		if why := sched.Why(plat, p.machines); why != "" {
			p.state[id] = stateUnbuildable
			p.reason[id] = why
			continue
		}
		job := sched.Job{Name: node.Name(), Platform: plat, PreferLocal: node.PreferLocalBuild, Expected: p.expected[id]}
		blocked := false
		start := len(deps)
		for _, e := range node.Inputs {
			switch p.state[e.To] {
			case stateUnbuildable, stateBlocked:
				blocked = true
			case stateBuild:
				deps = append(deps, jobOf[e.To])
			}
		}
		if blocked {
			p.state[id] = stateBlocked
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
	plan, err := sched.NewPlan(jobs, p.machines)
	if err != nil {
		return err
	}
	p.splan, p.jobNodes = plan, nodes
	dur := make([]time.Duration, len(jobs))
	for i, id := range nodes {
		dur[i] = p.expected[id]
	}
	tl, err := sched.SimulatePlan(plan, dur, sched.SimOptions{})
	if err != nil {
		return err
	}
	p.timeline = tl
	for _, e := range tl.Entries {
		if e.Outcome == sched.Built.String() {
			p.builder[nodes[e.Job]] = e.Machine
		}
	}
	return nil
}

// unbuildable lists the unbuildable nodes, sorted by path.
func (p *buildPlan) unbuildable() []graph.NodeID {
	var out []graph.NodeID
	for id, s := range p.state {
		if s == stateUnbuildable {
			out = append(out, graph.NodeID(id))
		}
	}
	sort.Slice(out, func(i, j int) bool { return p.g.Node(out[i]).Path.Compare(p.g.Node(out[j]).Path) < 0 })
	return out
}

// criticalPath is the longest chain of nodes to build, by expected time.
func (p *buildPlan) criticalPath() ([]graph.NodeID, time.Duration) {
	return p.g.CriticalPath(func(id graph.NodeID) time.Duration {
		if p.state[id] != stateBuild {
			return 0
		}
		return p.expected[id]
	})
}
