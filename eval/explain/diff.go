package explain

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/store"
)

// Change is one attribute that differs between the old and new version of
// a derivation, after store paths of matched derivations were mapped back
// to their old versions.
type Change struct {
	// What names the attribute: "env NAME", "args", "builder", "system",
	// "inputSrcs", "inputDrvs" or "outputs".
	What string
	// Status is "changed", "added" (only New is set) or "removed" (only
	// Old is set).
	Status string
	Old    string
	New    string
	// Edits turn Old into New: runs of equal, removed and inserted text,
	// by lines when either value has several lines and by words
	// otherwise. Store paths of matched derivations count as equal, so
	// only the changed part is marked. Nil unless Status is "changed".
	Edits []Edit
}

// Changed is a derivation of the new closure that is not in the old one.
type Changed struct {
	New store.Path
	// Old is the derivation of the old closure it replaces, matched by its
	// place in the graph or, failing that, by name; zero when nothing in
	// the old closure corresponds (then Own holds no attribute changes).
	Old store.Path
	// Own lists the derivation's own changes. Empty means it differs only
	// because some of its inputs do: see Causes.
	Own []Change
	// Causes are the root causes it differs because of, sorted; a root
	// cause lists itself.
	Causes []store.Path
}

// IsCause reports whether c is a root cause: a derivation that differs
// from its old version (or has none) beyond its inputs' paths.
func (c *Changed) IsCause() bool { return c.Old.IsZero() || len(c.Own) > 0 }

// DiffResult is the outcome of Diff.
type DiffResult struct {
	NewRoots, OldRoots []store.Path
	// Changed holds every derivation of the new closure that is not in the
	// old closure, dependencies first: exactly the .drv paths that
	// `comm -13` of the two closures' sorted .drv path lists prints.
	Changed []*Changed
	// Gone are the .drv paths of the old closure that are not in the new
	// one (`comm -23`), sorted.
	Gone []store.Path
	// Roots are the root causes, sorted by path, with the number of
	// changed derivations each one explains (its own included).
	Roots []RootCause
}

// RootCause is a derivation whose own content changed.
type RootCause struct {
	*Changed
	Explains int
}

// Diff compares the closures of newRoots and oldRoots, each the .drv paths
// reachable through inputDrvs and through inputSrcs that are .drv files
// (as `nix-store -qR` lists them). A derivation of the new closure that is
// also in the old one has not changed, whatever reaches it; every other
// one is matched with the derivation of the old closure it replaces,
// first through the graph (the roots by position, or by name when the
// counts differ; then the inputs of matched pairs by name, then by name
// without version), then by name among the old derivations left over. It
// is a root cause when it has no match or still differs from its match
// after every store path of a matched derivation is mapped back to the
// old one; otherwise it is attributed to the root causes among its inputs.
// Loading the closures stops with ctx's error when ctx is done.
func Diff(ctx context.Context, newRoots, oldRoots []store.Path, loadNew, loadOld Loader) (*DiffResult, error) {
	newOrder, newSet, err := closure(ctx, newRoots, loadNew)
	if err != nil {
		return nil, err
	}
	oldOrder, oldSet, err := closure(ctx, oldRoots, loadOld)
	if err != nil {
		return nil, err
	}
	d := &differ{
		loadNew: loadNew, loadOld: loadOld,
		newSet: newSet, oldSet: oldSet,
		pair:    map[store.Path]store.Path{},
		used:    map[store.Path]bool{},
		hashMap: map[string]rename{},
		byPath:  map[store.Path]*Changed{},
	}
	res := &DiffResult{NewRoots: newRoots, OldRoots: oldRoots}
	var changed []store.Path
	for _, p := range newOrder {
		if !oldSet[p] {
			changed = append(changed, p)
		}
	}
	for _, p := range oldOrder {
		if !newSet[p] {
			res.Gone = append(res.Gone, p)
		}
	}
	store.SortPaths(res.Gone)
	if err := d.matchGraph(newRoots, oldRoots); err != nil {
		return nil, err
	}
	d.matchLeftovers(changed, res.Gone)
	for n, o := range d.pair {
		if err := d.mapPaths(n, o); err != nil {
			return nil, err
		}
	}
	for _, p := range changed {
		c, err := d.explain(p)
		if err != nil {
			return nil, err
		}
		res.Changed = append(res.Changed, c)
	}
	explains := map[store.Path]int{}
	for _, c := range res.Changed {
		for _, r := range c.Causes {
			explains[r]++
		}
	}
	for _, c := range res.Changed {
		if c.IsCause() {
			res.Roots = append(res.Roots, RootCause{Changed: c, Explains: explains[c.New]})
		}
	}
	sort.Slice(res.Roots, func(i, j int) bool { return res.Roots[i].New.Compare(res.Roots[j].New) < 0 })
	return res, nil
}

// closure returns the .drv paths reachable from roots, dependencies first
// (a depth-first post-order), and as a set.
func closure(ctx context.Context, roots []store.Path, load Loader) ([]store.Path, map[store.Path]bool, error) {
	seen := map[store.Path]bool{}
	var order []store.Path
	type frame struct {
		p    store.Path
		deps []store.Path
	}
	var stack []frame
	push := func(p store.Path) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		seen[p] = true
		d, err := load(p)
		if err != nil {
			return err
		}
		deps, err := drvInputs(p, d)
		if err != nil {
			return err
		}
		stack = append(stack, frame{p, deps})
		return nil
	}
	for _, r := range roots {
		if seen[r] {
			continue
		}
		if err := push(r); err != nil {
			return nil, nil, err
		}
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if len(top.deps) == 0 {
				order = append(order, top.p)
				stack = stack[:len(stack)-1]
				continue
			}
			q := top.deps[0]
			top.deps = top.deps[1:]
			if !seen[q] {
				if err := push(q); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	return order, seen, nil
}

// drvInputs lists the .drv paths d depends on: its input derivations,
// then the input sources that are .drv files.
func drvInputs(p store.Path, d *drv.Derivation) ([]store.Path, error) {
	out := make([]store.Path, 0, len(d.InputDrvs))
	for _, in := range d.InputDrvs {
		out = append(out, in.Path)
	}
	for _, s := range d.InputSrcs {
		if !strings.HasSuffix(s, ".drv") {
			continue
		}
		q, err := store.ParsePath(s)
		if err != nil {
			return nil, fmt.Errorf("derivation %s: input source %w", p, err)
		}
		out = append(out, q)
	}
	return out, nil
}

type differ struct {
	loadNew, loadOld Loader
	newSet, oldSet   map[store.Path]bool
	pair             map[store.Path]store.Path // changed new drv -> old drv
	used             map[store.Path]bool       // old drvs some new one is paired with
	hashMap          map[string]rename         // new hash part -> old base name
	byPath           map[store.Path]*Changed
}

// changed reports whether the new closure's p is not in the old closure.
func (d *differ) changed(p store.Path) bool { return !d.oldSet[p] }

// matchGraph pairs changed derivations with old ones breadth first from
// the roots, so a derivation is matched where it is nearest a root: a pair
// of matched derivations matches its changed inputs with the old one's
// inputs that the new one does not also have.
func (d *differ) matchGraph(newRoots, oldRoots []store.Path) error {
	queue := pairByName(newRoots, oldRoots, len(newRoots) == len(oldRoots))
	for len(queue) > 0 {
		n, o := queue[0][0], queue[0][1]
		queue = queue[1:]
		if o.IsZero() || !d.changed(n) {
			continue
		}
		if _, done := d.pair[n]; done {
			continue
		}
		d.pair[n], d.used[o] = o, true
		nd, od, err := d.loadPair(n, o)
		if err != nil {
			return err
		}
		newIn, err := drvInputs(n, nd)
		if err != nil {
			return err
		}
		oldIn, err := drvInputs(o, od)
		if err != nil {
			return err
		}
		has := map[store.Path]bool{}
		var cands []store.Path
		for _, p := range newIn {
			has[p] = true
			if _, done := d.pair[p]; d.changed(p) && !done {
				cands = append(cands, p)
			}
		}
		var olds []store.Path
		for _, p := range oldIn {
			if !has[p] {
				olds = append(olds, p)
			}
		}
		queue = append(queue, pairByName(cands, olds, false)...)
	}
	return nil
}

// matchLeftovers pairs the changed derivations the graph walk did not
// match with old derivations no longer in the closure and not matched yet,
// by name.
func (d *differ) matchLeftovers(changed, gone []store.Path) {
	var ns, os []store.Path
	for _, p := range changed {
		if _, done := d.pair[p]; !done {
			ns = append(ns, p)
		}
	}
	for _, p := range gone {
		if !d.used[p] {
			os = append(os, p)
		}
	}
	store.SortPaths(ns)
	for _, pr := range pairByName(ns, os, false) {
		if !pr[1].IsZero() {
			d.pair[pr[0]], d.used[pr[1]] = pr[1], true
		}
	}
}

// loadPair loads new derivation n and old derivation o.
func (d *differ) loadPair(n, o store.Path) (nd, od *drv.Derivation, err error) {
	if nd, err = d.loadNew(n); err == nil {
		od, err = d.loadOld(o)
	}
	return nd, od, err
}

// mapPaths records that the store paths of new derivation n and its
// outputs correspond to those of o.
func (d *differ) mapPaths(n, o store.Path) error {
	d.hashMap[n.HashPart()] = rename{newName: n.Name(), oldBase: o.Base()}
	nd, od, err := d.loadPair(n, o)
	if err != nil {
		return err
	}
	for _, no := range nd.Outputs {
		for _, oo := range od.Outputs {
			if no.Name != oo.Name {
				continue
			}
			np, op := no.Path, oo.Path
			if !np.IsZero() && !op.IsZero() {
				d.hashMap[np.HashPart()] = rename{newName: np.Name(), oldBase: op.Base()}
			}
		}
	}
	return nil
}

// rename maps a new store path (by hash part) to its old base name.
type rename struct {
	newName string
	oldBase string
}

// pairByName pairs each new path with an old one: by position when
// byPosition; otherwise by exact name, then by package name (the name
// without its version, so "openssl-3.0.2" pairs with "openssl-3.0.1"),
// several of one name in the given order. Unpaired new paths get a zero
// old path.
func pairByName(newPs, oldPs []store.Path, byPosition bool) [][2]store.Path {
	out := make([][2]store.Path, len(newPs))
	if byPosition {
		for i := range newPs {
			out[i] = [2]store.Path{newPs[i], oldPs[i]}
		}
		return out
	}
	used := make([]bool, len(oldPs))
	for pass, key := range []func(store.Path) string{store.Path.Name, packageName} {
		olds := map[string][]int{}
		for j, o := range oldPs {
			if !used[j] {
				olds[key(o)] = append(olds[key(o)], j)
			}
		}
		for i, n := range newPs {
			if pass > 0 && !out[i][1].IsZero() {
				continue
			}
			out[i][0] = n
			if cands := olds[key(n)]; len(cands) > 0 {
				out[i][1], used[cands[0]] = oldPs[cands[0]], true
				olds[key(n)] = cands[1:]
			}
		}
	}
	return out
}

// packageName is a derivation's name without ".drv" and version, split as
// Nix's DrvName does (2.8 src/libexpr/names.cc): at the first '-' that is
// followed by something other than a letter.
func packageName(p store.Path) string {
	s, _ := splitName(strings.TrimSuffix(p.Name(), ".drv"))
	return s
}

// splitName splits a derivation name into package name and version as
// Nix's DrvName does (2.8 src/libexpr/names.cc).
func splitName(s string) (name, version string) {
	for i := 0; i+1 < len(s); i++ {
		c := s[i+1]
		if s[i] == '-' && !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// explain computes the own changes and causes of changed derivation n; its
// inputs were explained before it (the closure order is dependencies
// first).
func (d *differ) explain(n store.Path) (*Changed, error) {
	c := &Changed{New: n, Old: d.pair[n]}
	d.byPath[n] = c
	nd, err := d.loadNew(n)
	if err != nil {
		return nil, err
	}
	if !c.Old.IsZero() {
		od, err := d.loadOld(c.Old)
		if err != nil {
			return nil, err
		}
		c.Own = d.compare(nd, od)
	}
	causes := map[store.Path]bool{}
	if c.IsCause() {
		causes[n] = true
	}
	ins, err := drvInputs(n, nd)
	if err != nil {
		return nil, err
	}
	for _, p := range ins {
		if ic := d.byPath[p]; ic != nil {
			for _, r := range ic.Causes {
				causes[r] = true
			}
		}
	}
	for r := range causes {
		c.Causes = append(c.Causes, r)
	}
	store.SortPaths(c.Causes)
	return c, nil
}

// compare lists what differs between nd and od once nd's store paths of
// matched derivations are mapped back to the old ones.
func (d *differ) compare(nd, od *drv.Derivation) []Change {
	var out []Change
	m := d.rewrite
	changed := func(what, o, n string) {
		out = append(out, Change{What: what, Status: "changed", Old: o, New: n, Edits: diffText(o, n, m)})
	}
	if m(nd.Builder) != od.Builder {
		changed("builder", od.Builder, nd.Builder)
	}
	if nd.Platform != od.Platform {
		changed("system", od.Platform, nd.Platform)
	}
	if !equalMapped(nd.Args, od.Args, m) {
		changed("args", strings.Join(od.Args, " "), strings.Join(nd.Args, " "))
	}
	oldEnv := map[string]string{}
	for _, e := range od.Env {
		oldEnv[e.Key] = e.Value
	}
	for _, e := range nd.Env {
		ov, ok := oldEnv[e.Key]
		switch {
		case !ok:
			out = append(out, Change{What: "env " + e.Key, Status: "added", New: e.Value})
		case m(e.Value) != ov:
			changed("env "+e.Key, ov, e.Value)
		}
		delete(oldEnv, e.Key)
	}
	for _, e := range od.Env {
		if _, gone := oldEnv[e.Key]; gone {
			out = append(out, Change{What: "env " + e.Key, Status: "removed", Old: e.Value})
		}
	}
	var ns []string
	for _, s := range nd.InputSrcs {
		ns = append(ns, m(s))
	}
	sort.Strings(ns)
	if !equalMapped(ns, od.InputSrcs, func(s string) string { return s }) {
		changed("inputSrcs", names(od.InputSrcs), names(nd.InputSrcs))
	}
	if ni, oi := d.mappedInputs(nd), inputNames(od); ni != oi {
		changed("inputDrvs", oi, inputNames(nd))
	}
	var no, oo []string
	for _, o := range nd.Outputs {
		no = append(no, o.Name+":"+o.HashAlgo+":"+o.Hash)
	}
	for _, o := range od.Outputs {
		oo = append(oo, o.Name+":"+o.HashAlgo+":"+o.Hash)
	}
	if strings.Join(no, " ") != strings.Join(oo, " ") {
		changed("outputs", strings.Join(oo, " "), strings.Join(no, " "))
	}
	return out
}

// rewrite replaces every store path of a matched new derivation or output
// in s by its old counterpart: the hash part, and the name when it follows.
func (d *differ) rewrite(s string) string {
	if !strings.Contains(s, store.StoreDir+"/") {
		return s
	}
	var b strings.Builder
	rest := s
	for {
		i := strings.Index(rest, store.StoreDir+"/")
		if i < 0 || len(rest) < i+len(store.StoreDir)+1+store.HashPartLen {
			b.WriteString(rest)
			return b.String()
		}
		j := i + len(store.StoreDir) + 1
		b.WriteString(rest[:j])
		h := rest[j : j+store.HashPartLen]
		rest = rest[j+store.HashPartLen:]
		r, ok := d.hashMap[h]
		switch {
		case !ok:
			b.WriteString(h)
		case strings.HasPrefix(rest, "-"+r.newName):
			b.WriteString(r.oldBase)
			rest = rest[1+len(r.newName):]
		default:
			b.WriteString(r.oldBase[:store.HashPartLen])
		}
	}
}

func equalMapped(a, b []string, m func(string) string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if m(a[i]) != b[i] {
			return false
		}
	}
	return true
}

func names(paths []string) string {
	var out []string
	for _, p := range paths {
		if len(p) > len(store.StoreDir)+1+store.HashPartLen+1 {
			p = p[len(store.StoreDir)+1+store.HashPartLen+1:]
		}
		out = append(out, p)
	}
	return strings.Join(out, " ")
}

// mappedInputs is inputNames of nd with each matched input derivation
// replaced by its old counterpart, so it equals inputNames(old) when the
// inputs only changed versions of the same packages.
func (d *differ) mappedInputs(nd *drv.Derivation) string {
	var out []string
	for _, in := range nd.InputDrvs {
		name := in.Path.Name()
		if o, ok := d.pair[in.Path]; ok {
			name = o.Name()
		}
		out = append(out, name+"!"+strings.Join(in.Outputs, ","))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// inputNames is the sorted list of input derivation names with outputs.
func inputNames(d *drv.Derivation) string {
	var out []string
	for _, in := range d.InputDrvs {
		out = append(out, in.Path.Name()+"!"+strings.Join(in.Outputs, ","))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}
