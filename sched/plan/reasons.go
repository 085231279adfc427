package plan

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/sched"
)

// TrivialDuration is what a derivation Nix builds trivially is expected to
// take when it was never built before: preferLocalBuild ones (writeText,
// symlinkJoin, runCommandLocal and the like), allowSubstitutes = false,
// and builtin:fetchurl. A plan full of them must not read as hours.
const TrivialDuration = 2 * time.Second

// trivial reports whether Nix builds node quickly by construction.
func trivial(node *graph.Node) bool {
	return node.PreferLocalBuild || !node.AllowSubstitutes || node.System == "builtin"
}

// BuilderReason says why node id goes to its builder: the only builder
// with its system, a feature, or a mandatory feature; preferLocalBuild;
// or the earliest expected finish among the capable builders, with the
// numbers. "" for nodes not to be built.
func (p *Plan) BuilderReason(id graph.NodeID) string {
	p.whyOnce.Do(p.assignReasons)
	if p.why == nil {
		return ""
	}
	return p.why[id]
}

// assignReasons fills p.why for the jobs the timeline placed, from each
// job's expected start and end on its builder.
func (p *Plan) assignReasons() {
	if p.Timeline == nil {
		return
	}
	at := make([][2]time.Duration, len(p.JobNodes))
	for _, e := range p.Timeline.Entries {
		if e.Outcome == sched.Built.String() {
			at[e.Job] = [2]time.Duration{e.Start, e.End}
		}
	}
	p.why = make([]string, p.Graph.Len())
	for job, id := range p.JobNodes {
		b := p.builder[id]
		if b < 0 {
			continue
		}
		node := p.Graph.Node(id)
		capable := p.Sched.Capable(job)
		m := &p.Machines[b]
		switch {
		case node.PreferLocalBuild && m.Local && len(capable) == 1:
			p.why[id] = "preferLocalBuild"
		case len(capable) == 1:
			p.why[id] = p.onlyBuilder(node, b)
		default:
			t := at[job]
			p.why[id] = fmt.Sprintf("earliest expected finish of %d capable builders: starts at +%s, done at +%s here",
				len(capable), t[0].Round(time.Second), t[1].Round(time.Second))
		}
	}
}

// onlyBuilder explains why machine b is the only one that can build node.
func (p *Plan) onlyBuilder(node *graph.Node, b int) string {
	m := &p.Machines[b]
	for _, f := range m.MandatoryFeatures {
		if slices.Contains(node.RequiredFeatures, f) {
			return "only builder for mandatory feature " + f
		}
	}
	var others []sched.Machine
	for i := range p.Machines {
		if i != b && (node.System == "builtin" || slices.Contains(p.Machines[i].Systems, node.System)) {
			others = append(others, p.Machines[i])
		}
	}
	if len(others) == 0 {
		return "only builder for system " + node.System
	}
	if plat, err := sched.NewPlatform(node.System, node.RequiredFeatures...); err == nil {
		if why := sched.Why(plat, others); why != "" {
			return "only builder for system " + node.System + " that takes it: " + why
		}
	}
	return "only capable builder for system " + node.System
}

// UnbuildableGroup is a set of derivations that cannot be built for the
// same cause, with a hint that would fix it.
type UnbuildableGroup struct {
	Cause string // e.g. "no builder for system riscv64-linux"
	Hint  string
	Nodes []graph.NodeID // sorted by path
}

// UnbuildableGroups groups the unbuildable derivations by cause: a system
// no builder has, features no builder of that system supports, or
// builders that demand mandatory features. Largest group first.
func (p *Plan) UnbuildableGroups() []UnbuildableGroup {
	by := map[string]*UnbuildableGroup{}
	var order []string
	for _, id := range p.Unbuildable() {
		node := p.Graph.Node(id)
		cause, hint := p.cause(node)
		g := by[cause]
		if g == nil {
			g = &UnbuildableGroup{Cause: cause, Hint: hint}
			by[cause] = g
			order = append(order, cause)
		}
		g.Nodes = append(g.Nodes, id)
	}
	groups := make([]UnbuildableGroup, 0, len(order))
	for _, c := range order {
		groups = append(groups, *by[c])
	}
	sort.SliceStable(groups, func(i, j int) bool { return len(groups[i].Nodes) > len(groups[j].Nodes) })
	return groups
}

// cause names why node has no builder, and what would give it one.
func (p *Plan) cause(node *graph.Node) (cause, hint string) {
	var ofSystem []*sched.Machine
	for i := range p.Machines {
		if slices.Contains(p.Machines[i].Systems, node.System) {
			ofSystem = append(ofSystem, &p.Machines[i])
		}
	}
	if len(ofSystem) == 0 {
		return "no builder for system " + node.System,
			fmt.Sprintf("add a %s builder (--builders, or builders in nix.conf), or build it here under binfmt emulation: "+
				"extra-platforms = %s in nix.conf (boot.binfmt.emulatedSystems on NixOS)", node.System, node.System)
	}
	var missing []string
	for _, f := range node.RequiredFeatures {
		supported := false
		for _, m := range ofSystem {
			supported = supported || slices.Contains(m.SupportedFeatures, f) || slices.Contains(m.MandatoryFeatures, f)
		}
		if !supported {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		f := strings.Join(missing, ",")
		return fmt.Sprintf("no %s builder with feature %s", node.System, f),
			fmt.Sprintf("add %s to a builder's supported features (the 6th field of its builders line), or to system-features in nix.conf for the local machine", f)
	}
	return fmt.Sprintf("every %s builder that has the features is busy with other rules: %s", node.System, p.reason[int(p.nodeOf(node))]),
		"check the builders' max-jobs and mandatory features (the 4th and 7th fields of their builders lines)"
}

// nodeOf finds node's id (causes are rare: a lookup is fine).
func (p *Plan) nodeOf(node *graph.Node) graph.NodeID {
	id, _ := p.Graph.Lookup(node.Path)
	return id
}

// maxListed is how many paths WriteUnbuildable shows per group.
const maxListed = 5

// WriteUnbuildable lists the derivations no builder can build, grouped by
// cause, the first few paths of each group and a hint; and how many
// derivations depend on them.
func (p *Plan) WriteUnbuildable(w io.Writer) {
	bad := p.Unbuildable()
	if len(bad) == 0 {
		return
	}
	fmt.Fprintf(w, "error: %d derivation(s) cannot be built on any builder:\n", len(bad))
	for _, g := range p.UnbuildableGroups() {
		fmt.Fprintf(w, "  %s: %d derivation(s)\n", g.Cause, len(g.Nodes))
		for i, id := range g.Nodes {
			if i == maxListed {
				fmt.Fprintf(w, "    ... and %d more (--format json lists them all)\n", len(g.Nodes)-maxListed)
				break
			}
			fmt.Fprintf(w, "    %s\n", p.Graph.Node(id).Path)
		}
		fmt.Fprintf(w, "    hint: %s\n", g.Hint)
	}
	blocked := 0
	for _, s := range p.state {
		if s == Blocked {
			blocked++
		}
	}
	if blocked > 0 {
		fmt.Fprintf(w, "  and %d derivation(s) that depend on them are blocked\n", blocked)
	}
}

// WriteEstimate prints the expected time of the build on these builders:
// the simulated makespan, then per builder its jobs, the busy time the
// expected durations add up to, and how many durations were learned from
// earlier builds rather than defaulted.
func (p *Plan) WriteEstimate(w io.Writer) {
	if p.Timeline == nil {
		fmt.Fprintln(w, "nothing to build")
		return
	}
	learned := 0
	for _, id := range p.JobNodes {
		if p.known[id] {
			learned++
		}
	}
	fmt.Fprintf(w, "estimated time on these builders: %s (%d of %d durations learned from earlier builds, the rest defaulted)\n",
		p.Timeline.Makespan.Round(time.Second), learned, len(p.JobNodes))
	type load struct {
		jobs, learned, trivial int
		busy                   time.Duration
	}
	per := make([]load, len(p.Machines))
	for _, e := range p.Timeline.Entries {
		if e.Outcome != sched.Built.String() {
			continue
		}
		id := p.JobNodes[e.Job]
		l := &per[e.Machine]
		l.jobs++
		l.busy += e.End - e.Start
		if p.known[id] {
			l.learned++
		} else if trivial(p.Graph.Node(id)) {
			l.trivial++
		}
	}
	for i, l := range per {
		if l.jobs == 0 {
			continue
		}
		fmt.Fprintf(w, "  %s: %d build(s), %s of building over %d slot(s); %d learned, %d trivial, %d defaulted\n",
			p.Machines[i].Name(), l.jobs, l.busy.Round(time.Second), p.Machines[i].MaxJobs, l.learned, l.trivial, l.jobs-l.learned-l.trivial)
	}
}

// Lookup finds the derivations a user means by query: a store path (of
// the .drv or of one of its outputs), a base name, a name with version
// ("perl-5.36.0"), or a package name ("perl"). Several may match.
func (p *Plan) Lookup(query string) []graph.NodeID {
	query = strings.TrimSuffix(query, ".drv")
	var out []graph.NodeID
	for id := range p.Graph.Len() {
		n := graph.NodeID(id)
		node := p.Graph.Node(n)
		path := strings.TrimSuffix(node.Path.String(), ".drv")
		match := path == query || strings.TrimSuffix(node.Path.Base(), ".drv") == query ||
			node.Name() == query || sched.PackageName(node.Name()) == query
		for _, o := range node.Outputs {
			match = match || (!o.Path.IsZero() && o.Path.String() == query)
		}
		if match {
			out = append(out, n)
		}
	}
	return out
}

// WriteWhyBuilder explains, for each derivation matching query (Lookup),
// what the plan does with it and why: the builder and the reason, why it
// cannot be built, or why it is not built at all. It reports whether any
// matched.
func (p *Plan) WriteWhyBuilder(w io.Writer, query string) bool {
	ids := p.Lookup(query)
	for _, id := range ids {
		node := p.Graph.Node(id)
		fmt.Fprintf(w, "%s (%s)\n  ", node.Path, node.System)
		switch st := p.State(id); st {
		case Build:
			fmt.Fprintf(w, "built on %s: %s\n", p.Machines[p.Builder(id)].Name(), p.BuilderReason(id))
		case Unbuildable:
			fmt.Fprintf(w, "cannot be built: %s\n", p.Reason(id))
		case Blocked:
			fmt.Fprintln(w, "not built: it needs a derivation no builder can build")
		case Valid:
			fmt.Fprintln(w, "not built: its outputs are valid already")
		case Substitutable:
			fmt.Fprintln(w, "not built: its outputs are substituted")
		case Unneeded:
			fmt.Fprintln(w, "not built: only derivations that need not be built use it")
		}
	}
	return len(ids) > 0
}
