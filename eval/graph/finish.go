package graph

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/store"
)

// finish orders the loaded records topologically, renumbers them, and
// builds the Graph's indexes. It runs on one goroutine after the workers.
func (l *loader) finish(root string, rootIDs []NodeID) (*Graph, error) {
	order, err := l.topoOrder(rootIDs)
	if err != nil {
		return nil, err
	}
	n := len(order)
	perm := make([]NodeID, n) // discovery number -> NodeID
	for i, d := range order {
		perm[d] = NodeID(i)
	}
	g := &Graph{root: root, nodes: make([]Node, n), index: make(map[store.Path]NodeID, n)}
	if l.keep {
		g.drvs = make([]*drv.Derivation, n)
	}
	for i, d := range order {
		rec := l.recs[d]
		for j := range rec.node.Inputs {
			rec.node.Inputs[j].To = perm[rec.node.Inputs[j].To]
		}
		g.nodes[i] = rec.node
		if g.drvs != nil {
			g.drvs[i] = rec.drv
		}
		l.recs[d] = nil
	}
	l.recs, l.index = nil, nil
	g.roots = make([]NodeID, len(rootIDs))
	for i, d := range rootIDs {
		g.roots[i] = perm[d]
	}
	if dup := g.buildIndexes(); dup >= 0 {
		// Cannot happen: a path's text is unique, and discover keys by it.
		return nil, fmt.Errorf("graph: %s loaded twice", g.nodes[dup].Path)
	}
	return g, nil
}

// buildIndexes fills g.index from g.nodes on another goroutine while this
// one builds the views (dependents, depth, systems, feature sets): they are
// independent, and the map is a large part of the time. It returns a node
// whose path an earlier node has, or -1.
func (g *Graph) buildIndexes() NodeID {
	dup := NodeID(-1)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range g.nodes {
			p := g.nodes[i].Path
			if _, ok := g.index[p]; ok && dup < 0 {
				dup = NodeID(i)
			}
			g.index[p] = NodeID(i)
		}
	})
	g.indexDependents()
	g.computeDepth()
	g.groupBySystem()
	g.groupByFeature()
	wg.Wait()
	return dup
}

// topoOrder returns the discovery numbers in the Graph's node order: a
// depth-first post-order from the roots sorted by base name, following
// inputs in .drv order. A back edge is a cycle.
func (l *loader) topoOrder(rootIDs []NodeID) ([]NodeID, error) {
	const (
		unseen = iota
		onStack
		done
	)
	state := make([]uint8, len(l.recs))
	order := make([]NodeID, 0, len(l.recs))
	var stack []dfsFrame
	sorted := slices.Clone(rootIDs)
	slices.SortFunc(sorted, func(a, b NodeID) int {
		return l.recs[a].node.Path.Compare(l.recs[b].node.Path)
	})
	for _, r := range sorted {
		if state[r] != unseen {
			continue
		}
		state[r] = onStack
		stack = append(stack[:0], dfsFrame{id: r})
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			inputs := l.recs[top.id].node.Inputs
			if top.next < len(inputs) {
				c := inputs[top.next].To
				top.next++
				switch state[c] {
				case unseen:
					state[c] = onStack
					stack = append(stack, dfsFrame{id: c})
				case onStack:
					return nil, l.cycle(stack, c)
				}
				continue
			}
			state[top.id] = done
			order = append(order, top.id)
			stack = stack[:len(stack)-1]
		}
	}
	return order, nil
}

// dfsFrame is a node on topoOrder's stack and the next input to visit.
type dfsFrame struct {
	id   NodeID
	next int
}

// cycle builds the CycleError for a back edge from the top of stack to c.
func (l *loader) cycle(stack []dfsFrame, c NodeID) error {
	i := len(stack) - 1
	for stack[i].id != c {
		i--
	}
	e := &CycleError{}
	for _, f := range stack[i:] {
		e.Cycle = append(e.Cycle, l.recs[f.id].node.Path)
	}
	return e
}

func (g *Graph) indexDependents() {
	n := len(g.nodes)
	off := make([]int32, n+1)
	for i := range g.nodes {
		for _, e := range g.nodes[i].Inputs {
			off[e.To+1]++
		}
	}
	for i := 1; i <= n; i++ {
		off[i] += off[i-1]
	}
	deps := make([]NodeID, off[n])
	fill := slices.Clone(off[:n])
	for i := range g.nodes {
		for _, e := range g.nodes[i].Inputs {
			deps[fill[e.To]] = NodeID(i)
			fill[e.To]++
		}
	}
	g.dependents, g.dependentOff = deps, off
}

func (g *Graph) computeDepth() {
	g.depth = make([]int32, len(g.nodes))
	for i := range g.nodes {
		d := int32(0)
		for _, e := range g.nodes[i].Inputs {
			d = max(d, g.depth[e.To])
		}
		g.depth[i] = d + 1
	}
}

func (g *Graph) groupBySystem() {
	bySystem := make(map[string]int)
	last, lastSys := -1, ""
	for i := range g.nodes {
		n := &g.nodes[i]
		// Neighbours mostly share a system: the map is asked only when it
		// changes (a lookup per node was a tenth of building the views).
		s, ok := last, last >= 0 && n.System == lastSys
		if !ok {
			s, ok = bySystem[n.System]
		}
		if !ok {
			s = len(g.systems)
			bySystem[n.System] = s
			g.systems = append(g.systems, SystemView{System: n.System})
			// Share one string per system among all nodes.
		}
		last, lastSys = s, n.System
		n.System = g.systems[s].System
		g.systems[s].Nodes = append(g.systems[s].Nodes, NodeID(i))
	}
	slices.SortFunc(g.systems, func(a, b SystemView) int { return strings.Compare(a.System, b.System) })
	for s := range g.systems {
		v := &g.systems[s]
		sets := make(map[string]int)
		none := -1 // the set without features, most nodes': no lookup
		for _, id := range v.Nodes {
			f := g.nodes[id].RequiredFeatures
			k, ok := none, len(f) == 0 && none >= 0
			key := ""
			if !ok {
				key = strings.Join(f, " ")
				k, ok = sets[key]
			}
			if !ok {
				k = len(v.ByFeatures)
				sets[key] = k
				v.ByFeatures = append(v.ByFeatures, FeatureSetView{Features: f})
			}
			if len(f) == 0 {
				none = k
			}
			// Share one slice per feature set among all nodes.
			g.nodes[id].RequiredFeatures = v.ByFeatures[k].Features
			v.ByFeatures[k].Nodes = append(v.ByFeatures[k].Nodes, id)
		}
		slices.SortFunc(v.ByFeatures, func(a, b FeatureSetView) int {
			return strings.Compare(strings.Join(a.Features, " "), strings.Join(b.Features, " "))
		})
	}
}

func (g *Graph) groupByFeature() {
	byFeature := make(map[string]int)
	for i := range g.nodes {
		for _, f := range g.nodes[i].RequiredFeatures {
			k, ok := byFeature[f]
			if !ok {
				k = len(g.features)
				byFeature[f] = k
				g.features = append(g.features, FeatureView{Feature: f})
			}
			g.features[k].Nodes = append(g.features[k].Nodes, NodeID(i))
		}
	}
	slices.SortFunc(g.features, func(a, b FeatureView) int { return strings.Compare(a.Feature, b.Feature) })
}
