package plan

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/store"
)

func (p *Plan) rootPaths() []string {
	var out []string
	for _, r := range p.Roots {
		out = append(out, p.Graph.Node(r).Path.String())
	}
	return out
}

// NewRefGraph returns the store reference relation of the closure g: a
// derivation references its input derivations and input sources; sources
// are leaves. Ids are the graph's NodeIDs, then one per distinct source.
func NewRefGraph(g *graph.Graph) *RefGraph {
	n := g.Len()
	// Sources get ids after the derivations. Everything is sized up
	// front: growing these per node and per source was a tenth of
	// --format dot's allocation at 3,500 derivations.
	srcID := map[store.Path]int32{}
	var srcs []store.Path
	nrefs := 0
	for id := range n {
		node := g.Node(graph.NodeID(id))
		nrefs += len(node.Inputs) + len(node.InputSrcs)
		for _, s := range node.InputSrcs {
			if _, ok := srcID[s]; ok {
				continue
			}
			if nid, isNode := g.Lookup(s); isNode {
				srcID[s] = int32(nid) // a .drv used as a string
				continue
			}
			srcID[s] = int32(n + len(srcs))
			srcs = append(srcs, s)
		}
	}
	total := n + len(srcs)
	rg := &RefGraph{paths: make([]string, total), refs: make([][]int32, total)}
	for id := range n {
		rg.paths[id] = g.Node(graph.NodeID(id)).Path.String()
	}
	for i, s := range srcs {
		rg.paths[n+i] = s.String()
	}
	all := make([]int32, 0, nrefs)
	seen := make([]int32, total) // seen[id] == node+1: already a reference of node
	for id := range n {
		node := g.Node(graph.NodeID(id))
		start := len(all)
		add := func(r int32) {
			// Inputs are distinct and so are sources, but a .drv may be both.
			if seen[r] != int32(id)+1 {
				seen[r] = int32(id) + 1
				all = append(all, r)
			}
		}
		for _, e := range node.Inputs {
			add(int32(e.To))
		}
		for _, s := range node.InputSrcs {
			add(srcID[s])
		}
		rg.refs[id] = all[start:len(all):len(all)]
	}
	rg.finish()
	return rg
}

func (p *Plan) rootIDs() []int32 {
	ids := make([]int32, len(p.Roots))
	for i, r := range p.Roots {
		ids[i] = int32(r)
	}
	return ids
}

func (p *Plan) builderName(id graph.NodeID) string {
	if b := p.builder[id]; b >= 0 {
		return p.Machines[b].Name()
	}
	return ""
}

// treeNote annotates a derivation in --format tree with its system, state
// and builder; sources get nothing, so the paths read as in nix-store.
func (p *Plan) treeNote(ref int32) string {
	if int(ref) >= p.Graph.Len() {
		return ""
	}
	id := graph.NodeID(ref)
	node := p.Graph.Node(id)
	s := fmt.Sprintf("  (%s, %s", node.System, p.state[id])
	if b := p.builderName(id); b != "" {
		s += " on " + b + ": " + p.BuilderReason(id)
	}
	return s + ")"
}

var stateShape = map[State]string{
	Build: "box", Valid: "ellipse", Substitutable: "diamond",
	Unneeded: "plaintext", Unbuildable: "octagon", Blocked: "box",
}

// dotStyle colours a derivation by system and shapes it by state; sources
// are grey notes.
func (p *Plan) dotStyle(rg *RefGraph) func(int32) dotStyle {
	return func(ref int32) dotStyle {
		path := rg.paths[ref]
		if int(ref) >= p.Graph.Len() {
			return dotStyle{Label: nameOf(path), Shape: "note", FillColor: "#eeeeee"}
		}
		return p.nodeStyle(graph.NodeID(ref), path)
	}
}

func (p *Plan) nodeStyle(id graph.NodeID, path string) dotStyle {
	node := p.Graph.Node(id)
	return dotStyle{
		Label:     nameOf(path),
		More:      [2]string{node.System, p.builderName(id)},
		Shape:     stateShape[p.state[id]],
		FillColor: systemColour(node.System),
		Tooltip:   p.state[id].String(),
	}
}

// systemColour gives each system a stable pastel colour.
func systemColour(system string) string {
	switch system { // a switch: a map literal here was made per node
	case "x86_64-linux":
		return "#a6cee3"
	case "aarch64-linux":
		return "#b2df8a"
	case "riscv64-linux":
		return "#fdbf6f"
	case "i686-linux":
		return "#cab2d6"
	case "armv7l-linux":
		return "#fb9a99"
	case "builtin":
		return "#dddddd"
	}
	h := uint32(2166136261)
	for i := 0; i < len(system); i++ {
		h = (h ^ uint32(system[i])) * 16777619
	}
	return fmt.Sprintf("#%02x%02x%02x", 0xa0+h%0x50, 0xa0+(h>>8)%0x50, 0xa0+(h>>16)%0x50)
}

// WriteSummary prints the plan per system and per builder: counts per
// system, jobs per builder, and the critical path. (WriteUnbuildable
// lists what cannot be built.)
func (p *Plan) WriteSummary(out io.Writer) error {
	g := p.Graph
	fmt.Fprintf(out, "plan for %d root(s): %d derivations, depth %d (validity from %s)\n",
		len(p.Roots), g.Len(), g.MaxDepth(), p.Source)
	if p.SubstitutesUnknown != "" {
		fmt.Fprintf(out, "substitutes unknown: %s\n", p.SubstitutesUnknown)
	}
	fmt.Fprintln(out)

	bySystem := p.CountBySystem()
	systems := make([]string, 0, len(bySystem))
	for s := range bySystem {
		systems = append(systems, s)
	}
	sort.Strings(systems)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tvalid\tsubstitutable\tto build\tunbuildable\tblocked\tnot needed\tvalid bytes\t")
	for _, s := range systems {
		c := bySystem[s]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", s, c.Valid, c.Substitutable, c.Build, c.Unbuildable, c.Blocked, c.Unneeded, humanBytes(c.ValidBytes))
	}
	tw.Flush()

	fmt.Fprintln(out)
	perBuilderSys := p.BuildsByBuilder()
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "builder\tjobs\tspeed\tsystems\tfeatures\tto build")
	for i := range p.Machines {
		m := &p.Machines[i]
		feats := strings.Join(m.SupportedFeatures, ",")
		if len(m.MandatoryFeatures) > 0 {
			feats += " mandatory:" + strings.Join(m.MandatoryFeatures, ",")
		}
		if feats == "" {
			feats = "-"
		}
		var per []string
		total := 0
		for s, n := range perBuilderSys[i] {
			per = append(per, fmt.Sprintf("%d %s", n, s))
			total += n
		}
		sort.Strings(per)
		detail := ""
		if len(per) > 0 {
			detail = " (" + strings.Join(per, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d%s\n", m.Name(), m.MaxJobs, m.SpeedFactor, strings.Join(m.Systems, ","), feats, total, detail)
	}
	tw.Flush()

	path, total := p.CriticalPath()
	fmt.Fprintln(out)
	if len(path) == 0 {
		fmt.Fprintln(out, "critical path: nothing to build")
		return nil
	}
	allKnown := true
	for _, id := range path {
		allKnown = allKnown && p.known[id]
	}
	est := "durations unknown: no recorded builds"
	if allKnown {
		est = "expected " + total.Round(time.Second).String()
	}
	fmt.Fprintf(out, "critical path, in build order: %d derivations to build (%s)\n", len(path), est)
	for i := range path {
		id := path[len(path)-1-i]
		node := g.Node(id)
		fmt.Fprintf(out, "  %2d. %s  (%s)\n", i+1, node.Path, node.System)
	}
	if p.Timeline != nil && allKnown {
		fmt.Fprintf(out, "simulated makespan on these builders: %s (lower bound %s)\n",
			p.Timeline.Makespan.Round(time.Second), p.Timeline.LowerBound.Round(time.Second))
	}
	return nil
}

func humanBytes(n uint64) string {
	if n == 0 {
		return "-"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// JSONPlan is the schema of --format json (version 1; fields are only
// ever added). Nodes are in topological order (inputs first); edges point
// from a derivation to an input it uses. Unbuildable groups the
// derivations no builder can build by cause (empty when there are none);
// CriticalPath lists the derivations to build on the longest expected
// chain, the root first.
type JSONPlan struct {
	Version  int      `json:"version"`
	Roots    []string `json:"roots"`
	Validity string   `json:"validity"`
	// SubstitutesUnknown is why substitutability is unknown, when it is.
	SubstitutesUnknown string            `json:"substitutesUnknown,omitempty"`
	Builders           []JSONBuilder     `json:"builders"`
	Nodes              []JSONNode        `json:"nodes"`
	Edges              []JSONEdge        `json:"edges"`
	Unbuildable        []JSONUnbuildable `json:"unbuildable"`
	Critical           []string          `json:"criticalPath"`
}

// JSONUnbuildable is one UnbuildableGroup.
type JSONUnbuildable struct {
	Cause    string   `json:"cause"`
	Hint     string   `json:"hint"`
	DrvPaths []string `json:"drvPaths"`
}

// JSONBuilder is a machine: the local one ("local") first.
type JSONBuilder struct {
	Name              string   `json:"name"`
	Systems           []string `json:"systems"`
	MaxJobs           uint     `json:"maxJobs"`
	SpeedFactor       uint     `json:"speedFactor"`
	SupportedFeatures []string `json:"supportedFeatures"`
	MandatoryFeatures []string `json:"mandatoryFeatures"`
}

// JSONNode is a derivation. State is one of build, valid, substitutable,
// unneeded, unbuildable, blocked; Builder and BuilderReason are set for
// those to build (BuilderReason says why that builder), Reason for the
// unbuildable ones.
type JSONNode struct {
	DrvPath          string            `json:"drvPath"`
	Name             string            `json:"name"`
	System           string            `json:"system"`
	Outputs          map[string]string `json:"outputs"` // name -> path ("" when not known before the build)
	State            string            `json:"state"`
	Builder          string            `json:"builder,omitempty"`
	BuilderReason    string            `json:"builderReason,omitempty"`
	Reason           string            `json:"reason,omitempty"`
	RequiredFeatures []string          `json:"requiredSystemFeatures"`
	PreferLocalBuild bool              `json:"preferLocalBuild"`
	InputSrcs        []string          `json:"inputSrcs"`
	Depth            int               `json:"depth"`
	ValidBytes       uint64            `json:"validNarBytes,omitempty"`
}

// JSONEdge is a derivation using outputs of an input derivation.
type JSONEdge struct {
	From    string   `json:"from"`
	To      string   `json:"to"`
	Outputs []string `json:"outputs"`
}

// WriteJSON writes the JSONPlan document a node and an edge at a
// time, byte for byte what encoding/json's indented Encoder makes of the
// whole struct, without holding it: for 20,000 derivations the struct
// alone peaked at over 200 MB.
func (p *Plan) WriteJSON(w io.Writer) error {
	g := p.Graph
	js := &jsonStream{w: w}
	js.raw("{\n")
	js.field("version", 1)
	js.field("roots", p.rootPaths())
	js.field("validity", p.Source)
	if p.SubstitutesUnknown != "" {
		js.field("substitutesUnknown", p.SubstitutesUnknown)
	}
	var builders []JSONBuilder
	for i := range p.Machines {
		m := &p.Machines[i]
		builders = append(builders, JSONBuilder{
			Name: m.Name(), Systems: m.Systems, MaxJobs: m.MaxJobs, SpeedFactor: m.SpeedFactor,
			SupportedFeatures: nonNil(m.SupportedFeatures), MandatoryFeatures: nonNil(m.MandatoryFeatures),
		})
	}
	js.field("builders", builders)
	js.open("nodes")
	for id := 0; id < g.Len(); id++ {
		node := g.Node(graph.NodeID(id))
		nj := JSONNode{
			DrvPath: node.Path.String(), Name: node.Name(), System: node.System,
			Outputs: map[string]string{}, State: p.state[id].String(), Builder: p.builderName(graph.NodeID(id)), BuilderReason: p.BuilderReason(graph.NodeID(id)),
			Reason: p.reason[id], RequiredFeatures: nonNil(node.RequiredFeatures), PreferLocalBuild: node.PreferLocalBuild,
			InputSrcs: []string{}, Depth: g.Depth(graph.NodeID(id)), ValidBytes: p.outBytes[id],
		}
		for _, o := range node.Outputs {
			nj.Outputs[o.Name] = o.Path.String()
		}
		for _, s := range node.InputSrcs {
			nj.InputSrcs = append(nj.InputSrcs, s.String())
		}
		js.elem(nj)
	}
	js.close()
	js.open("edges")
	for id := 0; id < g.Len(); id++ {
		node := g.Node(graph.NodeID(id))
		for _, e := range node.Inputs {
			js.elem(JSONEdge{From: node.Path.String(), To: g.Node(e.To).Path.String(), Outputs: e.Outputs})
		}
	}
	js.close()
	critical := []string{}
	path, _ := p.CriticalPath()
	for _, id := range path {
		critical = append(critical, g.Node(id).Path.String())
	}
	unbuildable := []JSONUnbuildable{}
	for _, g := range p.UnbuildableGroups() {
		ju := JSONUnbuildable{Cause: g.Cause, Hint: g.Hint, DrvPaths: make([]string, len(g.Nodes))}
		for i, id := range g.Nodes {
			ju.DrvPaths[i] = p.Graph.Node(id).Path.String()
		}
		unbuildable = append(unbuildable, ju)
	}
	js.field("unbuildable", unbuildable)
	js.last = true
	js.field("criticalPath", critical)
	js.raw("}\n")
	return js.err
}

// jsonStream writes the members of a top-level JSON object indented by
// two spaces, as json.Encoder with SetIndent("", "  ") lays them out. The
// first error sticks.
type jsonStream struct {
	w     io.Writer
	err   error
	buf   []byte
	elems int  // elements written into the open array
	last  bool // the next member is the object's last
}

func (s *jsonStream) raw(text string) {
	if s.err == nil {
		_, s.err = io.WriteString(s.w, text)
	}
}

func (s *jsonStream) write(b []byte) {
	if s.err == nil {
		_, s.err = s.w.Write(b)
	}
}

func (s *jsonStream) marshal(v any, prefix string) []byte {
	b, err := json.MarshalIndent(v, prefix, "  ")
	if err != nil && s.err == nil {
		s.err = err
	}
	return b
}

func (s *jsonStream) end() string {
	if s.last {
		return "\n"
	}
	return ",\n"
}

func (s *jsonStream) field(key string, v any) {
	s.raw("  " + strconv.Quote(key) + ": ")
	s.write(s.marshal(v, "  "))
	s.raw(s.end())
}

// open starts an array member; elem adds to it; close ends it.
func (s *jsonStream) open(key string) {
	s.raw("  " + strconv.Quote(key) + ": [")
	s.elems = 0
}

func (s *jsonStream) elem(v any) {
	s.buf = s.buf[:0]
	if s.elems > 0 {
		s.buf = append(s.buf, ',')
	}
	s.buf = append(s.buf, "\n    "...)
	s.buf = append(s.buf, s.marshal(v, "    ")...)
	s.write(s.buf)
	s.elems++
}

func (s *jsonStream) close() {
	if s.elems > 0 {
		s.raw("\n  ")
	}
	s.raw("]" + s.end())
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// WriteTree writes the closure as nix-store -q --tree does, each
// derivation annotated with its system, state and builder. rg is
// NewRefGraph(p.Graph), which callers may build concurrently with the plan.
func (p *Plan) WriteTree(w io.Writer, rg *RefGraph) error {
	return rg.writeTree(w, p.rootIDs(), p.treeNote)
}

// WriteDot writes the closure as a Graphviz graph with the edges of
// nix-store -q --graph, derivations coloured by system and shaped by state.
// rg is NewRefGraph(p.Graph).
func (p *Plan) WriteDot(w io.Writer, rg *RefGraph) error {
	return rg.writeDot(w, p.rootIDs(), p.dotStyle(rg))
}
