// Package graph is the immutable closure graph of a set of store
// derivations: every .drv reachable from some roots through inputDrvs,
// loaded in parallel from a store directory.
//
// Vocabulary:
//   - node: one derivation, named by a dense NodeID. IDs are a topological
//     order, dependencies first: every input of node i has an ID below i.
//     The order is deterministic (a depth-first post-order from the roots
//     sorted by base name, inputs in the .drv's order), so the same closure
//     always gets the same IDs, whatever the load's concurrency.
//   - edge: node → input derivation, with the output names of the input
//     that are used (the inputDrvs entry).
//   - dependents: the reverse edges.
//   - depth: the number of nodes on the longest dependency chain from a
//     node down to a leaf (a leaf has depth 1): the fewest build steps,
//     one after the other, before the node's outputs exist.
//   - critical path: that longest chain, by node count or by a caller's
//     duration per node.
//
// A Graph keeps per node what planning and scheduling need (the .drv path,
// system, outputs, inputs, required features, preferLocalBuild,
// allowSubstitutes); the rest of each derivation (environment, builder,
// args) is dropped after parsing unless Options.KeepDerivations is set, and
// can be read again with Graph.Derivation. Repeated strings (systems,
// output names, features) are interned. A Graph is never modified after
// Load, so any number of goroutines may read it; slices it returns are
// shared and must not be modified.
package graph

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/store"
)

// NodeID is a node's dense index in a Graph: 0 ≤ id < Graph.Len(), and a
// topological order (inputs before the nodes that use them).
type NodeID int32

// Output is one output of a derivation.
type Output struct {
	Name string
	// Path is the output path; zero for floating CA, deferred and impure
	// outputs, whose paths are known only after the build.
	Path store.Path
}

// Edge is a use of an input derivation.
type Edge struct {
	To NodeID
	// Outputs are the output names of To that are used, sorted.
	Outputs []string
}

// Node is what the graph keeps of one derivation.
type Node struct {
	Path    store.Path // the .drv
	System  string     // the derivation's platform, e.g. "x86_64-linux"
	Outputs []Output   // sorted by name
	// Inputs are the input derivations, in .drv order (sorted by path).
	Inputs []Edge
	// InputSrcs are the input sources (non-derivation store paths), sorted.
	InputSrcs []store.Path
	// RequiredFeatures are the requiredSystemFeatures, sorted, without
	// duplicates; nil when there are none.
	RequiredFeatures []string
	PreferLocalBuild bool
	AllowSubstitutes bool
	Kind             drv.OutputKind
}

// Name returns the derivation's name: the .drv's name without ".drv".
func (n *Node) Name() string { return strings.TrimSuffix(n.Path.Name(), ".drv") }

// Output returns the output called name.
func (n *Node) Output(name string) (Output, bool) {
	for _, o := range n.Outputs {
		if o.Name == name {
			return o, true
		}
	}
	return Output{}, false
}

// Graph is an immutable derivation closure. See the package comment.
type Graph struct {
	root  string // chroot store root; "" for the real /nix/store
	nodes []Node
	roots []NodeID
	index map[store.Path]NodeID
	drvs  []*drv.Derivation // with Options.KeepDerivations

	dependents   []NodeID // all reverse edges, grouped by node
	dependentOff []int32  // node i's dependents: dependents[off[i]:off[i+1]]
	depth        []int32

	systems  []SystemView
	features []FeatureView

	// fromSnapshot is set when Load read the graph from a snapshot.
	fromSnapshot bool

	outputsOnce sync.Once
	outputs     map[store.Path]outputRef
}

type outputRef struct {
	node NodeID
	name string
}

// FromSnapshot reports whether Load read the graph from a snapshot
// (Options.SnapshotDir) instead of the .drv files.
func (g *Graph) FromSnapshot() bool { return g.fromSnapshot }

// Len returns the number of nodes.
func (g *Graph) Len() int { return len(g.nodes) }

// Node returns the node id. The Node is shared: do not modify it.
func (g *Graph) Node(id NodeID) *Node { return &g.nodes[id] }

// Roots returns the nodes Load was asked for, in the order given, without
// duplicates.
func (g *Graph) Roots() []NodeID { return g.roots }

// Lookup returns the node of a .drv path.
func (g *Graph) Lookup(p store.Path) (NodeID, bool) {
	id, ok := g.index[p]
	return id, ok
}

// LookupOutput returns the node that has p as an output path, and the
// output's name.
func (g *Graph) LookupOutput(p store.Path) (NodeID, string, bool) {
	g.outputsOnce.Do(func() {
		m := make(map[store.Path]outputRef)
		for i := range g.nodes {
			for _, o := range g.nodes[i].Outputs {
				if !o.Path.IsZero() {
					m[o.Path] = outputRef{NodeID(i), o.Name}
				}
			}
		}
		g.outputs = m
	})
	r, ok := g.outputs[p]
	return r.node, r.name, ok
}

// Dependents returns the nodes that have id as an input, in increasing
// order.
func (g *Graph) Dependents(id NodeID) []NodeID {
	return g.dependents[g.dependentOff[id]:g.dependentOff[id+1]]
}

// File returns where the .drv file of id is on the file system.
func (g *Graph) File(id NodeID) string { return storeFile(g.root, g.nodes[id].Path) }

// Derivation returns the full derivation of id: the one kept by Load with
// Options.KeepDerivations, or else read and parsed again from the store.
func (g *Graph) Derivation(id NodeID) (*drv.Derivation, error) {
	if g.drvs != nil {
		return g.drvs[id], nil
	}
	data, err := os.ReadFile(g.File(id))
	if err == nil {
		var d *drv.Derivation
		if d, err = drv.Parse(data); err == nil {
			return d, nil
		}
	}
	return nil, &LoadError{Path: g.nodes[id].Path, Err: err}
}

// Depth returns the number of nodes on the longest dependency chain from
// id down to a leaf; a node without inputs has depth 1.
func (g *Graph) Depth(id NodeID) int { return int(g.depth[id]) }

// MaxDepth returns the largest Depth of any node (0 for an empty graph).
func (g *Graph) MaxDepth() int {
	m := int32(0)
	for _, d := range g.depth {
		m = max(m, d)
	}
	return int(m)
}

// LongestChain returns a critical path by node count: a chain of
// MaxDepth() nodes from a node nothing in the graph depends on down to a
// leaf, each an input of the one before. Ties go to the smallest ID.
func (g *Graph) LongestChain() []NodeID {
	if len(g.nodes) == 0 {
		return nil
	}
	start := NodeID(0)
	for i, d := range g.depth {
		if d > g.depth[start] {
			start = NodeID(i)
		}
	}
	chain := []NodeID{start}
	for cur := start; g.depth[cur] > 1; {
		next := NodeID(-1)
		for _, e := range g.nodes[cur].Inputs {
			if g.depth[e.To] == g.depth[cur]-1 && (next < 0 || e.To < next) {
				next = e.To
			}
		}
		chain = append(chain, next)
		cur = next
	}
	return chain
}

// CriticalPath returns the chain of nodes whose durations add up to the
// most, from a node nothing depends on down to a leaf, and that sum: the
// shortest possible wall time to build the whole graph with unlimited
// builders. cost gives each node's duration (negative counts as 0).
func (g *Graph) CriticalPath(cost func(NodeID) time.Duration) ([]NodeID, time.Duration) {
	if len(g.nodes) == 0 {
		return nil, 0
	}
	// finish[i]: the longest chain below and including i. IDs are a
	// topological order, so inputs are final when i is reached.
	finish := make([]time.Duration, len(g.nodes))
	for i := range g.nodes {
		var longest time.Duration
		for _, e := range g.nodes[i].Inputs {
			longest = max(longest, finish[e.To])
		}
		finish[i] = longest + max(cost(NodeID(i)), 0)
	}
	start := NodeID(0)
	for i, f := range finish {
		if f > finish[start] {
			start = NodeID(i)
		}
	}
	chain := []NodeID{start}
	for cur := start; len(g.nodes[cur].Inputs) > 0; {
		next := NodeID(-1)
		for _, e := range g.nodes[cur].Inputs {
			if next < 0 || finish[e.To] > finish[next] || finish[e.To] == finish[next] && e.To < next {
				next = e.To
			}
		}
		chain = append(chain, next)
		cur = next
	}
	return chain, finish[start]
}

// BottomLevels returns, for every node, the total cost of the longest
// chain from it up through its dependents to a node nothing depends on,
// itself included: how much work at least remains once the node starts.
// A critical-path scheduler starts the ready node with the largest value.
func (g *Graph) BottomLevels(cost func(NodeID) time.Duration) []time.Duration {
	level := make([]time.Duration, len(g.nodes))
	for i := len(g.nodes) - 1; i >= 0; i-- {
		var longest time.Duration
		for _, d := range g.Dependents(NodeID(i)) {
			longest = max(longest, level[d])
		}
		level[i] = longest + max(cost(NodeID(i)), 0)
	}
	return level
}

// SystemView is the part of a graph for one system.
type SystemView struct {
	System string
	Nodes  []NodeID // increasing
	// ByFeatures splits Nodes by their exact RequiredFeatures set; the
	// set without features (if any node has none) comes first, then the
	// sets in lexical order of their joined names.
	ByFeatures []FeatureSetView
}

// FeatureSetView is the nodes of a system that require exactly Features.
type FeatureSetView struct {
	Features []string // sorted; nil for none
	Nodes    []NodeID // increasing
}

// FeatureView is every node that requires Feature (among others).
type FeatureView struct {
	Feature string
	Nodes   []NodeID // increasing
}

// BySystem returns the nodes grouped by system, systems sorted by name.
func (g *Graph) BySystem() []SystemView { return g.systems }

// ByFeature returns, for every required feature in the graph (sorted), the
// nodes that require it.
func (g *Graph) ByFeature() []FeatureView { return g.features }

// Sentinel errors of Load.
var (
	// ErrCycle is wrapped by a CycleError.
	ErrCycle = errors.New("graph: dependency cycle")
	// ErrNotDerivation is returned for a root or input that is not a .drv.
	ErrNotDerivation = errors.New("graph: not a derivation")
)

// LoadError reports a derivation that could not be read, parsed or
// followed. It wraps the cause: errors.Is(err, fs.ErrNotExist) holds for a
// missing file.
type LoadError struct {
	Path store.Path // the .drv that failed
	From store.Path // a derivation that has Path as input; zero for a root
	Root string     // the chroot store's root, "" for /nix/store
	Err  error
}

// Error says it in a user's terms, as Nix would: "derivation 'P', an
// input of 'F', does not exist in the store", or the parse error after
// the path.
func (e *LoadError) Error() string {
	what := fmt.Sprintf("derivation '%s'", e.Path)
	if errors.Is(e.Err, fs.ErrNotExist) {
		if !e.From.IsZero() {
			what += fmt.Sprintf(", an input of '%s',", e.From)
		}
		if e.Root != "" {
			return what + " does not exist in the store at " + e.Root
		}
		return what + " does not exist in the store"
	}
	if !e.From.IsZero() {
		what += fmt.Sprintf(" (an input of '%s')", e.From)
	}
	return what + ": " + e.Err.Error()
}

func (e *LoadError) Unwrap() error { return e.Err }

// CycleError reports derivations that depend on each other. Nix cannot
// write such files (a .drv path hashes its inputs), so it means a corrupt
// or hand-made store.
type CycleError struct {
	// Cycle lists the derivations around the cycle, each an input of the
	// one before; the first is an input of the last.
	Cycle []store.Path
}

func (e *CycleError) Error() string {
	var b strings.Builder
	b.WriteString("graph: dependency cycle: ")
	for _, p := range e.Cycle {
		b.WriteString(p.String())
		b.WriteString(" -> ")
	}
	b.WriteString(e.Cycle[0].String())
	return b.String()
}

func (e *CycleError) Unwrap() error { return ErrCycle }

// storeFile maps a store path to its file under a chroot store root.
func storeFile(root string, p store.Path) string {
	if root == "" {
		return p.String()
	}
	return filepath.Join(root, p.String())
}
