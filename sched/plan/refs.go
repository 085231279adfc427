package plan

import (
	"bufio"
	"cmp"
	"container/heap"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// RefGraph is the store-level reference relation of a closure: for a .drv
// its references are its input derivations and input sources, exactly the
// references Nix registers for it; for any other path, the references its
// store reports (none for a plain source). It drives the outputs that must
// match nix-store -q --tree and --graph node for node.
//
// Paths are dense ids (a plan uses graph NodeIDs for derivations and the
// ids after them for sources), so walking it needs no map: the base-name
// order Nix sorts by is computed once, as a rank per id.
type RefGraph struct {
	paths  []string  // full store path of each id
	bases  []string  // base name of each id (set by finish)
	refs   [][]int32 // references of each id, sorted by base name (rank)
	rank   []int32   // position of each id in base-name order
	byRank []int32   // rank -> id
}

// add appends a path with its references (ids, in any order) and returns
// its id; references may name ids added later. finish must follow.
func (g *RefGraph) add(path string, refs []int32) int32 {
	g.paths = append(g.paths, path)
	g.refs = append(g.refs, refs)
	return int32(len(g.paths) - 1)
}

// finish ranks the paths by base name and sorts every reference list.
func (g *RefGraph) finish() {
	n := len(g.paths)
	g.byRank = make([]int32, n)
	for i := range g.byRank {
		g.byRank[i] = int32(i)
	}
	// Base names start with 32 hash characters, which almost always
	// differ in their first 8: compare those as one integer first.
	bases := make([]string, n)
	g.bases = bases
	keys := make([]uint64, n)
	for i, p := range g.paths {
		bases[i] = baseName(p)
		var k [8]byte
		copy(k[:], bases[i])
		keys[i] = binary.BigEndian.Uint64(k[:])
	}
	slices.SortFunc(g.byRank, func(a, b int32) int {
		if keys[a] != keys[b] {
			return cmp.Compare(keys[a], keys[b])
		}
		return strings.Compare(bases[a], bases[b])
	})
	g.rank = make([]int32, n)
	for r, id := range g.byRank {
		g.rank[id] = int32(r)
	}
	for _, refs := range g.refs {
		slices.SortFunc(refs, func(a, b int32) int { return int(g.rank[a] - g.rank[b]) })
	}
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

// topoSorter orders sets of ids referrers first, as 2.8
// src/libutil/topo-sort.hh topoSort does: a DFS in base-name order that
// only follows references inside the set, post-order, reversed. Its marks
// are generation numbers, so each sort costs only the set's size.
type topoSorter struct {
	g       *RefGraph
	gen     int32
	in      []int32 // == gen: in the set being sorted
	visited []int32 // == gen: visited
	onStack []int32 // == gen: on the DFS stack
	sorted  []int32
}

func newTopoSorter(g *RefGraph) *topoSorter {
	n := len(g.paths)
	return &topoSorter{g: g, in: make([]int32, n), visited: make([]int32, n), onStack: make([]int32, n)}
}

// sort returns items (sorted by base name) referrers first, in a slice
// valid until the next call.
func (s *topoSorter) sort(items []int32) ([]int32, error) {
	s.gen++
	for _, id := range items {
		s.in[id] = s.gen
	}
	s.sorted = s.sorted[:0]
	for _, id := range items {
		if err := s.visit(id, -1); err != nil {
			return nil, err
		}
	}
	slices.Reverse(s.sorted)
	return s.sorted, nil
}

func (s *topoSorter) visit(id, parent int32) error {
	if s.onStack[id] == s.gen {
		return fmt.Errorf("cycle detected in the references of '%s' from '%s'", s.g.paths[id], s.g.paths[parent])
	}
	if s.visited[id] == s.gen {
		return nil
	}
	s.visited[id] = s.gen
	s.onStack[id] = s.gen
	for _, r := range s.g.refs[id] {
		if r != id && s.in[r] == s.gen {
			if err := s.visit(r, id); err != nil {
				return err
			}
		}
	}
	s.sorted = append(s.sorted, id)
	s.onStack[id] = 0
	return nil
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
func (g *RefGraph) writeTree(out io.Writer, roots []int32, annotate func(int32) string) error {
	w := bufio.NewWriter(out)
	done := make([]bool, len(g.paths))
	ts := newTopoSorter(g)
	var rec func(id int32, firstPad, tailPad string) error
	rec = func(id int32, firstPad, tailPad string) error {
		w.WriteString(firstPad)
		w.WriteString(g.paths[id])
		if annotate != nil {
			w.WriteString(annotate(id))
		}
		if done[id] {
			w.WriteString(" [...]\n")
			return nil
		}
		w.WriteByte('\n')
		done[id] = true
		sorted, err := ts.sort(g.refs[id])
		if err != nil {
			return err
		}
		// Printed dependencies last, so children come in reverse.
		children := slices.Clone(sorted)
		slices.Reverse(children)
		for i, c := range children {
			fp, tp := tailPad+treeConn, tailPad+treeLine
			if i == len(children)-1 {
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
	return w.Flush()
}

// dotStyle gives the attributes nbuild adds to a node of the DOT output.
type dotStyle struct {
	// Label's lines: Label, then each non-empty More, joined by line
	// breaks (kept apart so that no label is concatenated per node).
	Label     string
	More      [2]string
	FillColor string
	Shape     string
	Tooltip   string
}

// appendQuoted appends s as Go's %q prints it (what the DOT output has
// always used), without strconv's per-rune work for the plain ASCII that
// store paths and labels almost always are.
func appendQuoted(dst []byte, s string) []byte {
	start := len(dst)
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] >= 0x20 && s[j] < 0x7f && s[j] != '"' && s[j] != '\\' {
			j++
		}
		dst = append(dst, s[i:j]...)
		switch {
		case j == len(s):
		case s[j] == '\n':
			dst = append(dst, '\\', 'n') // labels have line breaks
			j++
		default:
			return strconv.AppendQuote(dst[:start], s)
		}
		i = j
	}
	return append(dst, '"')
}

// appendQuotedLines appends lines, those after the first only when not
// empty, joined by line breaks and quoted as appendQuoted quotes them.
func appendQuotedLines(dst []byte, first string, more [2]string) []byte {
	dst = appendQuoted(dst, first)
	for _, l := range more {
		if l == "" {
			continue
		}
		dst = append(dst[:len(dst)-1], '\\', 'n') // reopen the quote
		start := len(dst)
		dst = appendQuoted(dst, l)
		// Drop l's opening quote: the closing one ends the label.
		dst = append(dst[:start], dst[start+1:]...)
	}
	return dst
}

// appendQuotedBase appends a store path's base name quoted: its characters
// (store.ParsePath's [a-zA-Z0-9+-._?=]) need no escaping.
func appendQuotedBase(dst []byte, base string) []byte {
	dst = append(dst, '"')
	dst = append(dst, base...)
	return append(dst, '"')
}

// writeDot prints the closure of roots as nix-store -q --graph does (2.8
// src/nix-store/dotgraph.cc): a worklist in base-name order, each node
// followed by the edges from its references to it, colours cycling. style
// replaces Nix's constant node look (red boxes) with nbuild's.
func (g *RefGraph) writeDot(out io.Writer, roots []int32, style func(int32) dotStyle) error {
	colours := []string{"black", "red", "green", "blue", "magenta", "burlywood"}
	n := 0
	// The worklist is a min-heap of ranks; pending marks what is in it or
	// done, so nothing is pushed twice.
	pending := make([]bool, len(g.paths))
	var work rankHeap
	for _, r := range roots {
		if !pending[r] {
			pending[r] = true
			heap.Push(&work, g.rank[r])
		}
	}
	w := bufio.NewWriter(out)
	var buf []byte
	buf = append(buf, "digraph G {\n"...)
	for len(work) > 0 {
		id := g.byRank[heap.Pop(&work).(int32)]
		base := g.bases[id]
		st := dotStyle{Label: nameOf(g.paths[id]), Shape: "box", FillColor: "#ff0000"}
		if style != nil {
			st = style(id)
		}
		buf = appendQuotedBase(buf, base)
		buf = append(buf, " [label = "...)
		buf = appendQuotedLines(buf, st.Label, st.More)
		buf = append(buf, ", shape = "...)
		buf = append(buf, st.Shape...)
		buf = append(buf, ", style = filled, fillcolor = "...)
		buf = appendQuoted(buf, st.FillColor)
		if st.Tooltip != "" {
			buf = append(buf, ", tooltip = "...)
			buf = appendQuoted(buf, st.Tooltip)
		}
		buf = append(buf, "];\n"...)
		for _, r := range g.refs[id] {
			if r == id {
				continue
			}
			if !pending[r] {
				pending[r] = true
				heap.Push(&work, g.rank[r])
			}
			buf = appendQuotedBase(buf, g.bases[r])
			buf = append(buf, " -> "...)
			buf = appendQuotedBase(buf, base)
			buf = append(buf, " [color = "...)
			buf = appendQuoted(buf, colours[n%len(colours)])
			buf = append(buf, "];\n"...)
			n++
			if len(buf) > 32<<10 { // a root may have thousands of edges
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
		if len(buf) > 32<<10 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	buf = append(buf, "}\n"...)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	return w.Flush()
}

// rankHeap is a min-heap of ranks (container/heap).
type rankHeap []int32

func (h rankHeap) Len() int           { return len(h) }
func (h rankHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h rankHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *rankHeap) Push(x any)        { *h = append(*h, x.(int32)) }
func (h *rankHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
