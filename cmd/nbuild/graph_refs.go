package main

import (
	"container/heap"
	"fmt"
	"io"
	"sort"
	"strings"
)

// refGraph is the store-level reference relation of a closure: for a .drv
// its references are its input derivations and input sources, exactly the
// references Nix registers for it; for any other path, the references its
// store reports (none for a plain source). It drives the outputs that must
// match nix-store -q --tree and --graph node for node.
type refGraph struct {
	refs map[string][]string // full path -> references, sorted by base name
}

// baseName returns "<hash>-<name>" of a full store path.
func baseName(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

// nameOf returns the name part of a store path (without the hash).
func nameOf(p string) string {
	b := baseName(p)
	if len(b) > 33 {
		return b[33:]
	}
	return b
}

func sortByBase(ps []string) {
	sort.Slice(ps, func(i, j int) bool { return baseName(ps[i]) < baseName(ps[j]) })
}

// topoSort orders items referrers first, as 2.8 src/libutil/topo-sort.hh
// topoSort does: a DFS in base-name order that only follows references
// inside the set, post-order, reversed.
func (g *refGraph) topoSort(items []string) ([]string, error) {
	in := make(map[string]bool, len(items))
	for _, p := range items {
		in[p] = true
	}
	sorted := make([]string, 0, len(items))
	visited := make(map[string]bool, len(items))
	parents := make(map[string]bool)
	var visit func(p, parent string) error
	visit = func(p, parent string) error {
		if parents[p] {
			return fmt.Errorf("cycle detected in the references of '%s' from '%s'", p, parent)
		}
		if visited[p] {
			return nil
		}
		visited[p] = true
		parents[p] = true
		for _, r := range g.refs[p] {
			if r != p && in[r] {
				if err := visit(r, p); err != nil {
					return err
				}
			}
		}
		sorted = append(sorted, p)
		delete(parents, p)
		return nil
	}
	order := append([]string(nil), items...)
	sortByBase(order)
	for _, p := range order {
		if err := visit(p, ""); err != nil {
			return nil, err
		}
	}
	for i, j := 0, len(sorted)-1; i < j; i, j = i+1, j-1 {
		sorted[i], sorted[j] = sorted[j], sorted[i]
	}
	return sorted, nil
}

const (
	treeConn = "├───"
	treeLast = "└───"
	treeLine = "│   "
	treeNull = "    "
)

// writeTree prints roots as nix-store -q --tree does (2.8
// src/nix-store/nix-store.cc printTree): a node already printed gets
// " [...]" and is not expanded; children are the references topologically
// sorted, dependencies first. annotate may add text after a path.
func (g *refGraph) writeTree(w io.Writer, roots []string, annotate func(string) string) error {
	done := make(map[string]bool)
	var rec func(p, firstPad, tailPad string) error
	rec = func(p, firstPad, tailPad string) error {
		note := ""
		if annotate != nil {
			note = annotate(p)
		}
		if done[p] {
			_, err := fmt.Fprintf(w, "%s%s%s [...]\n", firstPad, p, note)
			return err
		}
		done[p] = true
		if _, err := fmt.Fprintf(w, "%s%s%s\n", firstPad, p, note); err != nil {
			return err
		}
		sorted, err := g.topoSort(g.refs[p])
		if err != nil {
			return err
		}
		for i, j := 0, len(sorted)-1; i < j; i, j = i+1, j-1 {
			sorted[i], sorted[j] = sorted[j], sorted[i]
		}
		for i, c := range sorted {
			last := i == len(sorted)-1
			fp, tp := tailPad+treeConn, tailPad+treeLine
			if last {
				fp, tp = tailPad+treeLast, tailPad+treeNull
			}
			if err := rec(c, fp, tp); err != nil {
				return err
			}
		}
		return nil
	}
	for _, r := range roots {
		if err := rec(r, "", ""); err != nil {
			return err
		}
	}
	return nil
}

// dotStyle gives the attributes nbuild adds to a node of the DOT output.
type dotStyle struct {
	Label     string
	FillColor string
	Shape     string
	Tooltip   string
}

// writeDot prints the closure of roots as nix-store -q --graph does (2.8
// src/nix-store/dotgraph.cc): a worklist in base-name order, each node
// followed by the edges from its references to it, colours cycling. style
// replaces Nix's constant node look (red boxes) with nbuild's.
func (g *refGraph) writeDot(w io.Writer, roots []string, style func(string) dotStyle) error {
	colours := []string{"black", "red", "green", "blue", "magenta", "burlywood"}
	n := 0
	done := make(map[string]bool)
	work := newPathHeap(roots, done)
	if _, err := io.WriteString(w, "digraph G {\n"); err != nil {
		return err
	}
	for work.Len() > 0 {
		p := work.pop()
		if done[p] {
			continue
		}
		done[p] = true
		st := dotStyle{Label: nameOf(p), Shape: "box", FillColor: "#ff0000"}
		if style != nil {
			st = style(p)
		}
		extra := ""
		if st.Tooltip != "" {
			extra = fmt.Sprintf(", tooltip = %q", st.Tooltip)
		}
		if _, err := fmt.Fprintf(w, "%q [label = %q, shape = %s, style = filled, fillcolor = %q%s];\n",
			baseName(p), st.Label, st.Shape, st.FillColor, extra); err != nil {
			return err
		}
		for _, r := range g.refs[p] {
			if r == p {
				continue
			}
			work.push(r)
			if _, err := fmt.Fprintf(w, "%q -> %q [color = %q];\n", baseName(r), baseName(p), colours[n%len(colours)]); err != nil {
				return err
			}
			n++
		}
	}
	_, err := io.WriteString(w, "}\n")
	return err
}

// pathHeap is the sorted worklist of printDotGraph: pop returns the
// pending path with the smallest base name; a path already done or already
// pending is not pushed again.
type pathHeap struct {
	items []string
	in    map[string]bool
	done  map[string]bool
}

func newPathHeap(ps []string, done map[string]bool) *pathHeap {
	h := &pathHeap{in: make(map[string]bool), done: done}
	for _, p := range ps {
		h.push(p)
	}
	return h
}

func (h *pathHeap) Len() int           { return len(h.items) }
func (h *pathHeap) Less(i, j int) bool { return baseName(h.items[i]) < baseName(h.items[j]) }
func (h *pathHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *pathHeap) Push(x any)         { h.items = append(h.items, x.(string)) }
func (h *pathHeap) Pop() any {
	p := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return p
}

func (h *pathHeap) push(p string) {
	if h.in[p] || h.done[p] {
		return
	}
	h.in[p] = true
	heap.Push(h, p)
}

func (h *pathHeap) pop() string {
	p := heap.Pop(h).(string)
	delete(h.in, p)
	return p
}
