package plan

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/sched"
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
	// SubstitutesUnknown says why substitutability is unknown, "" when
	// it is known (Validity.SubstitutesUnknown).
	SubstitutesUnknown string

	state   []State
	builder []int          // machine index for nodes to build, -1 otherwise
	reason  map[int]string // node -> why it cannot be built
	// why is each node's BuilderReason, worked out on first use: the
	// summary prints none, and at 100,000 derivations they were 100,000
	// map entries and formatted strings.
	whyOnce sync.Once
	why     []string
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
	// CacheDir keeps simulated schedules (sched.SimCache), so planning the
	// same closure on the same machines again skips the simulation; ""
	// for none.
	CacheDir string
}

// New decides each node's state and builder. Nodes are needed from
// the roots down: a needed node whose outputs are all valid (or can be
// substituted) needs none of its inputs; one that must be built needs all
// of them. Nodes to build are planned with the scheduler; those no builder
// can take are unbuildable, and everything that needs them is blocked.
func New(g *graph.Graph, vi *Validity, opts Options) (*Plan, error) {
	n := g.Len()
	p := &Plan{
		Graph: g, Roots: g.Roots(), Machines: opts.Machines, Source: vi.Source, SubstitutesUnknown: vi.SubstitutesUnknown,
		state: make([]State, n), builder: make([]int, n), reason: map[int]string{},
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
	return p, p.schedule(opts.CacheDir)
}

// schedule assigns builders to the nodes to build by simulating the
// scheduler with the expected durations (through the cache in cacheDir,
// if any); unbuildable nodes and their referrers are taken out first.
func (p *Plan) schedule(cacheDir string) error {
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
	type platformKey struct {
		system, features string
		n                int
	}
	type platformMatch struct {
		plat sched.Platform
		err  error
		why  string // sched.Why
	}
	platforms := map[platformKey]platformMatch{}
	var lastKey platformKey
	var last platformMatch
	haveLast := false
	for id := 0; id < g.Len(); id++ {
		jobOf[id] = -1
		if p.state[id] != Build {
			continue
		}
		node := g.Node(graph.NodeID(id))
		// A closure has a handful of platforms: each is made and matched
		// once (NewPlatform and Why per node were a tenth of plan.New at
		// 100,000 derivations, with a formatted reason for every node the
		// first machine cannot build).
		key := platformKey{node.System, featuresKey(node.RequiredFeatures), len(node.RequiredFeatures)}
		pm, ok := last, haveLast && key == lastKey // neighbours mostly share one
		if !ok {
			pm, ok = platforms[key]
		}
		if !ok {
			pm.plat, pm.err = sched.NewPlatform(node.System, node.RequiredFeatures...)
			if pm.err == nil {
				pm.why = sched.Why(pm.plat, p.Machines)
			}
			platforms[key] = pm
		}
		last, lastKey, haveLast = pm, key, true
		if pm.err != nil {
			return fmt.Errorf("derivation %s: %w", node.Path, pm.err)
		}
		plat := pm.plat
		if why := pm.why; why != "" {
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
	dur := make([]time.Duration, len(jobs))
	for i, id := range nodes {
		dur[i] = p.expected[id]
	}
	plan, tl, err := sched.SimCache{Dir: cacheDir}.Plan(jobs, p.Machines, dur, sched.SimOptions{})
	if err != nil {
		return err
	}
	p.Sched, p.JobNodes = plan, nodes
	p.Timeline = tl
	for _, e := range tl.Entries {
		if e.Outcome == sched.Built.String() {
			p.builder[nodes[e.Job]] = e.Machine
		}
	}
	return nil
}

// featuresKey identifies a list of features: the feature itself when
// there is one (no allocation), else each length-prefixed.
func featuresKey(fs []string) string {
	if len(fs) <= 1 {
		return strings.Join(fs, "")
	}
	var b []byte
	for _, f := range fs {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return string(b)
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
	// By the graph's per-system views: one map entry per system rather
	// than a lookup per node.
	for _, v := range p.Graph.BySystem() {
		c := &Counts{}
		by[v.System] = c
		for _, id := range v.Nodes {
			p.count(c, id)
		}
	}
	return by
}

// count adds node id to c.
func (p *Plan) count(c *Counts, id graph.NodeID) {
	switch p.state[id] {
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

// BuildsByBuilder counts the derivations assigned to each machine (by
// index in Machines), per system.
func (p *Plan) BuildsByBuilder() []map[string]int {
	by := make([]map[string]int, len(p.Machines))
	n := make([]int, len(p.Machines))
	for _, v := range p.Graph.BySystem() {
		clear(n)
		for _, id := range v.Nodes {
			if b := p.builder[id]; b >= 0 {
				n[b]++
			}
		}
		for b, k := range n {
			if k == 0 {
				continue
			}
			if by[b] == nil {
				by[b] = map[string]int{}
			}
			by[b][v.System] = k
		}
	}
	return by
}
