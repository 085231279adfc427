package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/metacache"
	"github.com/spf13/pflag"
)

const graphUsage = `graph [flags] INSTALLABLE...

Shows the build plan of INSTALLABLEs (.drv paths, output paths, FILE.nix
with -A ATTR, or FLAKEREF#ATTR): which derivations are valid, which can be
substituted, which must be built, for which system and on which builder,
which cannot be built anywhere and why, and the critical path. Several
installables form one plan. Exits 1 when some derivation has no capable
builder (they are listed first).

The loaded derivation graph is saved as a snapshot beside the metadata
cache, so the next plan of the same installables reads one file instead of
every .drv (a .drv path names its content: a snapshot never goes stale);
which outputs are valid is asked anew every time. --no-cache bypasses it.`

const graphExample = `  nbuild graph --store testdata/store testdata/store/nix/store/*-nixos-system-pi-23.05.drv --builders @testdata/machines
  nbuild graph --format dot ./result.drv | dot -Tsvg > plan.svg
  nbuild graph --why /nix/store/...-openssl-3.0.8.drv ./system.drv
  nbuild graph --diff ./old-system.drv ./new-system.drv`

type graphOptions struct {
	format   string
	builders string
	store    string
	attrs    []string
	why      string
	diff     string
	nixConf  string
	cacheDir string
	noCache  bool
	defDur   time.Duration
	options  map[string]string // --option NAME VALUE, for the nix-daemon
}

func graphCommand() command {
	return command{
		name:    "graph",
		summary: "inspect a build plan: states, systems, builders, critical path, why, diff",
		run: func(ctx context.Context, env *cmdEnv, args []string) error {
			var o graphOptions
			fs := newFlagSet(env, "graph", graphUsage, graphExample)
			fs.StringVar(&o.format, "format", "summary", "output: summary, tree, dot or json")
			jsonOut := fs.Bool("json", false, "same as --format json")
			fs.StringVar(&o.builders, "builders", "", "builders as Nix's `builders` setting: a spec, or @FILE (default: nix.conf's)")
			fs.StringVar(&o.store, "store", "", "the store: a chroot store directory (default: the machine's, through the nix-daemon)")
			fs.StringArrayVarP(&o.attrs, "attr", "A", nil, "attribute to instantiate from a FILE.nix installable (repeatable)")
			fs.StringVar(&o.why, "why", "", "show the shortest dependency chains from the roots to PATH (.drv, output or source)")
			fs.StringVar(&o.diff, "diff", "", "compare with the plan of INSTALLABLE (the old version) and name the root causes")
			fs.StringVar(&o.nixConf, "nix-conf", "", "nix.conf to read the local machine from (default $NIX_CONF_DIR/nix.conf or /etc/nix/nix.conf)")
			fs.StringVar(&o.cacheDir, "cache-dir", "", "metadata cache with recorded build times (default ~/.cache/nbuild/metacache); graph snapshots go to DIR-graphs; \"none\" disables both")
			fs.BoolVar(&o.noCache, "no-cache", false, "read every .drv file, not the graph snapshot an earlier run saved in CACHE-DIR-graphs (and save none)")
			fs.DurationVar(&o.defDur, "default-duration", 5*time.Minute, "build time assumed for derivations never built before")
			optionFlag(fs, &o.options)
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			if *jsonOut {
				o.format = "json"
			}
			switch o.format {
			case "summary", "tree", "dot", "json":
			default:
				return usagef("graph: unknown --format %q (summary, tree, dot, json)", o.format)
			}
			if fs.NArg() == 0 {
				return usagef("graph: no installable given (see 'nbuild graph --help')")
			}
			return runGraph(ctx, env, o, fs.Args())
		},
	}
}

func runGraph(ctx context.Context, env *cmdEnv, o graphOptions, args []string) error {
	// A plan is a short burst of allocation in a short-lived process: at
	// the default GOGC the collector's cycles were a third of the user
	// time of a warm 3,500-derivation plan, for 0.5 MB less peak RSS.
	// (20,000 derivations: 0.24 -> 0.19 s warm, 51 -> 76 MB, still 1.5x
	// the .drv bytes.) Not for JSON, whose encoder makes garbage in
	// proportion to the output (28 -> 35 MB at 3,500). An explicit GOGC
	// wins.
	if os.Getenv("GOGC") == "" && o.format != "json" {
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	root, err := parseStoreFlag(o.store)
	if err != nil {
		return err
	}
	roots, err := resolveInstallables(ctx, root, args, o.attrs)
	if err != nil {
		return err
	}
	if o.diff != "" {
		old, err := resolveInstallables(ctx, root, []string{o.diff}, o.attrs)
		if err != nil {
			return err
		}
		return runDiff(env.stdout, root, roots, old, o.format)
	}
	if o.why != "" {
		return runWhy(env.stdout, root, roots, o.why, o.format)
	}
	g, err := graph.Load(ctx, string(root), roots, graph.Options{SnapshotDir: snapshotDir(o)})
	if err != nil {
		return err
	}
	// The reference graph of tree and DOT depends on the graph alone: it
	// is built on another core while validity and the plan are worked out.
	var refs chan *refGraph
	if o.format == "tree" || o.format == "dot" {
		refs = make(chan *refGraph, 1)
		go func() { refs <- buildRefGraph(g) }()
	}
	machines, err := graphMachines(env, o)
	if err != nil {
		return err
	}
	vi, err := queryStates(ctx, root, g, g.Roots(), validityOptions{options: o.options, noSubstituters: noSubstituters(env, o), cacheDir: snapshotDir(o)})
	if err != nil {
		return err
	}
	cache := openBuildTimes(o.cacheDir)
	if cache != nil {
		defer cache.Close()
	}
	p, err := makePlan(g, vi, planOptions{machines: machines, defaultDuration: o.defDur, duration: recordedDuration(cache)})
	if err != nil {
		return err
	}
	w := bufio.NewWriter(env.stdout)
	switch o.format {
	case "summary":
		err = writeSummary(w, p)
	case "tree":
		err = (<-refs).writeTree(w, p.rootIDs(), p.treeNote)
	case "dot":
		rg := <-refs
		err = rg.writeDot(w, p.rootIDs(), p.dotStyle(rg))
	case "json":
		err = writePlanJSON(w, p)
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	if bad := p.unbuildable(); len(bad) > 0 {
		if o.format != "summary" {
			// The summary lists them itself, first; other formats are
			// data on stdout, so the list goes to stderr.
			writeUnbuildable(env.stderr, p, bad)
		}
		return &exitError{code: 1}
	}
	return nil
}

// graphMachines are the builders: the local machine from nix.conf, then
// --builders (or nix.conf's builders setting).
func graphMachines(env *cmdEnv, o graphOptions) ([]sched.Machine, error) {
	conf, err := readNixConf(env, o)
	if err != nil {
		return nil, err
	}
	local, err := sched.LocalMachine(conf, sched.LocalOptions{})
	if err != nil {
		return nil, err
	}
	machines := []sched.Machine{local}
	spec := o.builders
	if spec == "" {
		spec = conf.Value("builders", "")
	}
	if spec != "" {
		remote, err := sched.ParseMachines(spec, sched.ParseOptions{ThisSystem: local.Systems[0]})
		if err != nil {
			return nil, err
		}
		machines = append(machines, remote...)
	}
	return machines, nil
}

// readNixConf reads --nix-conf, or $NIX_CONF_DIR/nix.conf, or
// /etc/nix/nix.conf; a missing default file is an empty configuration.
func readNixConf(env *cmdEnv, o graphOptions) (sched.Conf, error) {
	confFile := o.nixConf
	if confFile == "" {
		dir := env.getenv("NIX_CONF_DIR")
		if dir == "" {
			dir = "/etc/nix"
		}
		confFile = filepath.Join(dir, "nix.conf")
	}
	conf := sched.Conf{}
	if f, err := os.Open(confFile); err == nil {
		conf, err = sched.ParseNixConf(f, sched.ConfOptions{Path: confFile})
		f.Close()
		if err != nil {
			return nil, err
		}
	} else if o.nixConf != "" {
		return nil, err
	}
	return conf, nil
}

// noSubstituters reports whether the plan's store has no substituters:
// --option substituters ” (and no extra-substituters), or a nix.conf
// whose substituters (default https://cache.nixos.org/) are empty. Then
// nothing is substitutable and the daemon's QueryMissing, which walks
// every .drv of the closure, can be skipped. (A daemon that does not
// trust this user ignores the override; Nix's own clients assume the
// same.)
func noSubstituters(env *cmdEnv, o graphOptions) bool {
	if v, ok := o.options["substituters"]; ok {
		return strings.TrimSpace(v) == "" && strings.TrimSpace(o.options["extra-substituters"]) == ""
	}
	conf, err := readNixConf(env, o)
	if err != nil {
		return false
	}
	return strings.TrimSpace(conf.Value("substituters", "https://cache.nixos.org/")) == "" &&
		strings.TrimSpace(o.options["extra-substituters"]) == ""
}

// recordedDuration looks build times up in the metadata cache by package
// name (the name without its version); nil without a cache.
func recordedDuration(cache *metacache.Cache) func(name string) (time.Duration, bool) {
	if cache == nil {
		return nil
	}
	// One scan instead of a lookup per derivation.
	all := cache.AllBuildStats()
	return func(name string) (time.Duration, bool) {
		if len(all) == 0 {
			return 0, false
		}
		s, ok := all[sched.PackageName(name)]
		return s.Average, ok
	}
}

// metaCacheDir resolves --cache-dir: "" for none.
func metaCacheDir(dir string) string {
	switch dir {
	case "none":
		return ""
	case "":
		d, err := metacache.DefaultDir()
		if err != nil {
			return ""
		}
		return d
	}
	return filepath.Clean(dir)
}

// snapshotDir is where graph snapshots are kept: beside the metadata
// cache, in <cache-dir>-graphs. A snapshot holds a closure's derivation
// graph only (a .drv path names its content, so it never goes stale);
// validity is always asked fresh. "" disables them.
func snapshotDir(o graphOptions) string {
	dir := metaCacheDir(o.cacheDir)
	if o.noCache || dir == "" {
		return ""
	}
	return dir + "-graphs"
}

// openBuildTimes opens the metadata cache read-only for recorded build
// times: a shared lock and no memtable, about a millisecond where a
// writable open costs ten. No cache (none yet, locked by a running build,
// unreadable) only costs the estimates, silently.
func openBuildTimes(dir string) *metacache.Cache {
	if dir = metaCacheDir(dir); dir == "" {
		return nil
	}
	c, err := metacache.Open(dir, metacache.Options{ReadOnly: true})
	if err != nil || c.Degraded() != nil {
		c.Close()
		return nil
	}
	return c
}

// openCache opens the metadata cache for recorded build times; a cache
// that cannot be opened only costs the estimates.
func openCache(env *cmdEnv, dir string) *metacache.Cache {
	if dir = metaCacheDir(dir); dir == "" {
		return nil
	}
	c, err := metacache.Open(dir, metacache.Options{})
	if err != nil {
		fmt.Fprintf(env.stderr, "warning: metadata cache %s: %v\n", dir, err)
		return nil
	}
	return c
}

func (p *buildPlan) rootPaths() []string {
	var out []string
	for _, r := range p.roots {
		out = append(out, p.g.Node(r).Path.String())
	}
	return out
}

// buildRefGraph returns the store reference relation of the closure g: a
// derivation references its input derivations and input sources; sources
// are leaves. Ids are the graph's NodeIDs, then one per distinct source.
func buildRefGraph(g *graph.Graph) *refGraph {
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
	rg := &refGraph{paths: make([]string, total), refs: make([][]int32, total)}
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

func (p *buildPlan) rootIDs() []int32 {
	ids := make([]int32, len(p.roots))
	for i, r := range p.roots {
		ids[i] = int32(r)
	}
	return ids
}

func (p *buildPlan) builderName(id graph.NodeID) string {
	if b := p.builder[id]; b >= 0 {
		return p.machines[b].Name()
	}
	return ""
}

// treeNote annotates a derivation in --format tree with its system, state
// and builder; sources get nothing, so the paths read as in nix-store.
func (p *buildPlan) treeNote(ref int32) string {
	if int(ref) >= p.g.Len() {
		return ""
	}
	id := graph.NodeID(ref)
	node := p.g.Node(id)
	s := fmt.Sprintf("  (%s, %s", node.System, p.state[id])
	if b := p.builderName(id); b != "" {
		s += " on " + b
	}
	return s + ")"
}

var stateShape = map[nodeState]string{
	stateBuild: "box", stateValid: "ellipse", stateSubstitutable: "diamond",
	stateUnneeded: "plaintext", stateUnbuildable: "octagon", stateBlocked: "box",
}

// dotStyle colours a derivation by system and shapes it by state; sources
// are grey notes.
func (p *buildPlan) dotStyle(rg *refGraph) func(int32) dotStyle {
	return func(ref int32) dotStyle {
		path := rg.paths[ref]
		if int(ref) >= p.g.Len() {
			return dotStyle{Label: nameOf(path), Shape: "note", FillColor: "#eeeeee"}
		}
		return p.nodeStyle(graph.NodeID(ref), path)
	}
}

func (p *buildPlan) nodeStyle(id graph.NodeID, path string) dotStyle {
	node := p.g.Node(id)
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

func writeUnbuildable(w io.Writer, p *buildPlan, bad []graph.NodeID) {
	fmt.Fprintf(w, "error: %d derivation(s) cannot be built on any builder:\n", len(bad))
	for _, id := range bad {
		node := p.g.Node(id)
		fmt.Fprintf(w, "  %s (%s): %s\n", node.Path, node.System, p.reason[int(id)])
	}
}

// writeSummary prints the plan per system and per builder.
func writeSummary(out io.Writer, p *buildPlan) error {
	if bad := p.unbuildable(); len(bad) > 0 {
		writeUnbuildable(out, p, bad)
		blocked := 0
		for _, s := range p.state {
			if s == stateBlocked {
				blocked++
			}
		}
		if blocked > 0 {
			fmt.Fprintf(out, "  and %d derivation(s) that depend on them are blocked\n", blocked)
		}
		fmt.Fprintln(out)
	}
	g := p.g
	fmt.Fprintf(out, "plan for %d root(s): %d derivations, depth %d (validity from %s)\n\n",
		len(p.roots), g.Len(), g.MaxDepth(), p.validity)

	type counts struct {
		valid, subst, build, unneeded, unbuildable, blocked int
		bytes                                               uint64
	}
	bySystem := map[string]*counts{}
	for id := 0; id < g.Len(); id++ {
		sys := g.Node(graph.NodeID(id)).System
		c := bySystem[sys]
		if c == nil {
			c = &counts{}
			bySystem[sys] = c
		}
		switch p.state[id] {
		case stateValid:
			c.valid++
			c.bytes += p.outBytes[id]
		case stateSubstitutable:
			c.subst++
		case stateBuild:
			c.build++
		case stateUnneeded:
			c.unneeded++
		case stateUnbuildable:
			c.unbuildable++
		case stateBlocked:
			c.blocked++
		}
	}
	systems := make([]string, 0, len(bySystem))
	for s := range bySystem {
		systems = append(systems, s)
	}
	sort.Strings(systems)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tvalid\tsubstitutable\tto build\tunbuildable\tblocked\tnot needed\tvalid bytes\t")
	for _, s := range systems {
		c := bySystem[s]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", s, c.valid, c.subst, c.build, c.unbuildable, c.blocked, c.unneeded, humanBytes(c.bytes))
	}
	tw.Flush()

	fmt.Fprintln(out)
	perBuilder := make([]int, len(p.machines))
	perBuilderSys := make([]map[string]int, len(p.machines))
	for id, b := range p.builder {
		if b >= 0 {
			perBuilder[b]++
			if perBuilderSys[b] == nil {
				perBuilderSys[b] = map[string]int{}
			}
			perBuilderSys[b][g.Node(graph.NodeID(id)).System]++
		}
	}
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "builder\tjobs\tspeed\tsystems\tfeatures\tto build")
	for i := range p.machines {
		m := &p.machines[i]
		feats := strings.Join(m.SupportedFeatures, ",")
		if len(m.MandatoryFeatures) > 0 {
			feats += " mandatory:" + strings.Join(m.MandatoryFeatures, ",")
		}
		if feats == "" {
			feats = "-"
		}
		var per []string
		for s, n := range perBuilderSys[i] {
			per = append(per, fmt.Sprintf("%d %s", n, s))
		}
		sort.Strings(per)
		detail := ""
		if len(per) > 0 {
			detail = " (" + strings.Join(per, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d%s\n", m.Name(), m.MaxJobs, m.SpeedFactor, strings.Join(m.Systems, ","), feats, perBuilder[i], detail)
	}
	tw.Flush()

	path, total := p.criticalPath()
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
	if p.timeline != nil && allKnown {
		fmt.Fprintf(out, "simulated makespan on these builders: %s (lower bound %s)\n",
			p.timeline.Makespan.Round(time.Second), p.timeline.LowerBound.Round(time.Second))
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

// planJSON is the schema of --format json (version 1). Nodes are in
// topological order (inputs first); edges point from a derivation to an
// input it uses.
type planJSON struct {
	Version  int           `json:"version"`
	Roots    []string      `json:"roots"`
	Validity string        `json:"validity"`
	Builders []builderJSON `json:"builders"`
	Nodes    []nodeJSON    `json:"nodes"`
	Edges    []edgeJSON    `json:"edges"`
	Critical []string      `json:"criticalPath"`
}

type builderJSON struct {
	Name              string   `json:"name"`
	Systems           []string `json:"systems"`
	MaxJobs           uint     `json:"maxJobs"`
	SpeedFactor       uint     `json:"speedFactor"`
	SupportedFeatures []string `json:"supportedFeatures"`
	MandatoryFeatures []string `json:"mandatoryFeatures"`
}

type nodeJSON struct {
	DrvPath          string            `json:"drvPath"`
	Name             string            `json:"name"`
	System           string            `json:"system"`
	Outputs          map[string]string `json:"outputs"` // name -> path ("" when not known before the build)
	State            string            `json:"state"`
	Builder          string            `json:"builder,omitempty"`
	Reason           string            `json:"reason,omitempty"`
	RequiredFeatures []string          `json:"requiredSystemFeatures"`
	PreferLocalBuild bool              `json:"preferLocalBuild"`
	InputSrcs        []string          `json:"inputSrcs"`
	Depth            int               `json:"depth"`
	ValidBytes       uint64            `json:"validNarBytes,omitempty"`
}

type edgeJSON struct {
	From    string   `json:"from"`
	To      string   `json:"to"`
	Outputs []string `json:"outputs"`
}

// writePlanJSON writes the planJSON document a node and an edge at a
// time, byte for byte what encoding/json's indented Encoder makes of the
// whole struct, without holding it: for 20,000 derivations the struct
// alone peaked at over 200 MB.
func writePlanJSON(w io.Writer, p *buildPlan) error {
	g := p.g
	js := &jsonStream{w: w}
	js.raw("{\n")
	js.field("version", 1)
	js.field("roots", p.rootPaths())
	js.field("validity", p.validity)
	var builders []builderJSON
	for i := range p.machines {
		m := &p.machines[i]
		builders = append(builders, builderJSON{
			Name: m.Name(), Systems: m.Systems, MaxJobs: m.MaxJobs, SpeedFactor: m.SpeedFactor,
			SupportedFeatures: nonNil(m.SupportedFeatures), MandatoryFeatures: nonNil(m.MandatoryFeatures),
		})
	}
	js.field("builders", builders)
	js.open("nodes")
	for id := 0; id < g.Len(); id++ {
		node := g.Node(graph.NodeID(id))
		nj := nodeJSON{
			DrvPath: node.Path.String(), Name: node.Name(), System: node.System,
			Outputs: map[string]string{}, State: p.state[id].String(), Builder: p.builderName(graph.NodeID(id)),
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
			js.elem(edgeJSON{From: node.Path.String(), To: g.Node(e.To).Path.String(), Outputs: e.Outputs})
		}
	}
	js.close()
	critical := []string{}
	path, _ := p.criticalPath()
	for _, id := range path {
		critical = append(critical, g.Node(id).Path.String())
	}
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

// optionFlag adds Nix's --option NAME VALUE (repeatable): a nix.conf
// setting sent to every nix-daemon connection. pflag gives a flag one word,
// so parseFlags first joins "--option NAME VALUE" into
// "--option=NAME=VALUE" (see joinOptionArgs).
func optionFlag(fs *pflag.FlagSet, into *map[string]string) {
	fs.Var(&optionValue{m: into}, "option", "NAME VALUE: a nix.conf setting for the nix-daemon, as nix --option (repeatable)")
}

type optionValue struct{ m *map[string]string }

func (v *optionValue) String() string { return "" }
func (v *optionValue) Type() string   { return "" }
func (v *optionValue) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("--option takes a name and a value")
	}
	if *v.m == nil {
		*v.m = map[string]string{}
	}
	(*v.m)[name] = value
	return nil
}

// joinOptionArgs rewrites "--option NAME VALUE" into "--option=NAME=VALUE",
// leaving everything after "--" alone.
func joinOptionArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		if args[i] == "--" {
			return append(out, args[i:]...)
		}
		if args[i] == "--option" && i+2 < len(args) {
			out = append(out, "--option="+args[i+1]+"="+args[i+2])
			i += 2
			continue
		}
		out = append(out, args[i])
	}
	return out
}
