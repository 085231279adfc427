package explain

import (
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
	What string // "env FOO", "args", "builder", "system", "inputSrcs", "inputDrvs", "outputs", "added"
	Old  string
	New  string
}

// Changed is a derivation of the new plan that differs from the old plan.
type Changed struct {
	New store.Path
	Old store.Path // zero when nothing in the old plan corresponds
	// Own lists the derivation's own changes. Empty means it changed only
	// because inputs changed: see Causes.
	Own []Change
	// Causes are the root causes (derivations with Own changes) it is
	// rebuilt for, sorted; a root cause lists itself.
	Causes []store.Path
}

// DiffResult is the outcome of Diff.
type DiffResult struct {
	// Changed holds every derivation of the new plan's closure that the
	// old plan does not have, dependencies first.
	Changed []*Changed
	// Roots are the root causes, sorted by path, with the number of
	// changed derivations each one explains (its own included).
	Roots []RootCause
}

// RootCause is a derivation whose own content changed.
type RootCause struct {
	*Changed
	Explains int
}

// Diff compares the closures of newRoots and oldRoots. Derivations are
// matched by the roots' positions (or names, when the counts differ) and
// then input by input, by derivation name. A changed derivation is a root
// cause when it still differs from its old version after every store path
// of a matched derivation is mapped back to the old one; otherwise it is
// attributed to the root causes among its inputs.
func Diff(newRoots, oldRoots []store.Path, loadNew, loadOld Loader) (*DiffResult, error) {
	d := &differ{
		loadNew: loadNew, loadOld: loadOld,
		pair:    map[store.Path]store.Path{},
		hashMap: map[string]rename{},
		visited: map[store.Path]bool{},
		byPath:  map[store.Path]*Changed{},
	}
	pairs := pairByName(newRoots, oldRoots, len(newRoots) == len(oldRoots))
	for _, pr := range pairs {
		if err := d.match(pr[0], pr[1]); err != nil {
			return nil, err
		}
	}
	res := &DiffResult{}
	for _, p := range d.order {
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
		if len(c.Own) > 0 {
			res.Roots = append(res.Roots, RootCause{Changed: c, Explains: explains[c.New]})
		}
	}
	sort.Slice(res.Roots, func(i, j int) bool { return res.Roots[i].New.Compare(res.Roots[j].New) < 0 })
	return res, nil
}

type differ struct {
	loadNew, loadOld Loader
	pair             map[store.Path]store.Path // new drv -> old drv (zero if none)
	hashMap          map[string]rename         // new hash part -> old base name
	visited          map[store.Path]bool
	order            []store.Path // changed new drvs, dependencies first
	byPath           map[store.Path]*Changed
}

// match walks a new derivation and its old counterpart (zero if none),
// recording pairs and hash-part mappings; identical paths end the walk,
// since equal paths mean equal closures.
func (d *differ) match(n, o store.Path) error {
	if d.visited[n] {
		return nil
	}
	d.visited[n] = true
	if n == o {
		return nil
	}
	nd, err := d.loadNew(n)
	if err != nil {
		return err
	}
	var od *drv.Derivation
	if !o.IsZero() {
		if od, err = d.loadOld(o); err != nil {
			return err
		}
		d.hashMap[n.HashPart()] = rename{newName: n.Name(), oldBase: o.Base()}
		for _, no := range nd.Outputs {
			for _, oo := range od.Outputs {
				if no.Name != oo.Name {
					continue
				}
				np, err1 := store.ParsePath(no.Path)
				op, err2 := store.ParsePath(oo.Path)
				if err1 == nil && err2 == nil {
					d.hashMap[np.HashPart()] = rename{newName: np.Name(), oldBase: op.Base()}
				}
			}
		}
	}
	d.pair[n] = o
	var newIn, oldIn []store.Path
	for _, in := range nd.InputDrvs {
		p, err := store.ParsePath(in.Path)
		if err != nil {
			return fmt.Errorf("derivation %s: %w", n, err)
		}
		newIn = append(newIn, p)
	}
	if od != nil {
		for _, in := range od.InputDrvs {
			p, err := store.ParsePath(in.Path)
			if err != nil {
				return fmt.Errorf("derivation %s: %w", o, err)
			}
			oldIn = append(oldIn, p)
		}
	}
	for _, pr := range pairByName(newIn, oldIn, false) {
		if err := d.match(pr[0], pr[1]); err != nil {
			return err
		}
	}
	d.order = append(d.order, n)
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
// several of one name in sorted order.
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
	s := strings.TrimSuffix(p.Name(), ".drv")
	for i := 0; i+1 < len(s); i++ {
		c := s[i+1]
		if s[i] == '-' && !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return s[:i]
		}
	}
	return s
}

// explain computes the own changes and causes of changed derivation n; its
// inputs were explained before it (d.order is dependencies first).
func (d *differ) explain(n store.Path) (*Changed, error) {
	c := &Changed{New: n, Old: d.pair[n]}
	d.byPath[n] = c
	nd, err := d.loadNew(n)
	if err != nil {
		return nil, err
	}
	if c.Old.IsZero() {
		c.Own = []Change{{What: "added", New: n.Name()}}
	} else {
		od, err := d.loadOld(c.Old)
		if err != nil {
			return nil, err
		}
		c.Own = d.compare(nd, od)
	}
	causes := map[store.Path]bool{}
	if len(c.Own) > 0 {
		causes[n] = true
	}
	for _, in := range nd.InputDrvs {
		p, _ := store.ParsePath(in.Path)
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
	if a, b := m(nd.Builder), od.Builder; a != b {
		out = append(out, Change{What: "builder", Old: b, New: nd.Builder})
	}
	if nd.Platform != od.Platform {
		out = append(out, Change{What: "system", Old: od.Platform, New: nd.Platform})
	}
	if !equalMapped(nd.Args, od.Args, m) {
		out = append(out, Change{What: "args", Old: strings.Join(od.Args, " "), New: strings.Join(nd.Args, " ")})
	}
	oldEnv := map[string]string{}
	for _, e := range od.Env {
		oldEnv[e.Key] = e.Value
	}
	for _, e := range nd.Env {
		ov, ok := oldEnv[e.Key]
		switch {
		case !ok:
			out = append(out, Change{What: "env " + e.Key, New: e.Value})
		case m(e.Value) != ov:
			out = append(out, Change{What: "env " + e.Key, Old: ov, New: e.Value})
		}
		delete(oldEnv, e.Key)
	}
	for _, e := range od.Env {
		if _, gone := oldEnv[e.Key]; gone {
			out = append(out, Change{What: "env " + e.Key, Old: e.Value})
		}
	}
	var ns []string
	for _, s := range nd.InputSrcs {
		ns = append(ns, m(s))
	}
	sort.Strings(ns)
	if !equalMapped(ns, od.InputSrcs, func(s string) string { return s }) {
		out = append(out, Change{What: "inputSrcs", Old: names(od.InputSrcs), New: names(nd.InputSrcs)})
	}
	if ni, oi := d.mappedInputs(nd), inputNames(od); ni != oi {
		out = append(out, Change{What: "inputDrvs", Old: oi, New: inputNames(nd)})
	}
	var no, oo []string
	for _, o := range nd.Outputs {
		no = append(no, o.Name+":"+o.HashAlgo+":"+o.Hash)
	}
	for _, o := range od.Outputs {
		oo = append(oo, o.Name+":"+o.HashAlgo+":"+o.Hash)
	}
	if strings.Join(no, " ") != strings.Join(oo, " ") {
		out = append(out, Change{What: "outputs", Old: strings.Join(oo, " "), New: strings.Join(no, " ")})
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

// mappedInputs is inputNames of nd with each input derivation replaced by
// its old counterpart, so it equals inputNames(old) when the inputs only
// changed versions of the same packages.
func (d *differ) mappedInputs(nd *drv.Derivation) string {
	var out []string
	for _, in := range nd.InputDrvs {
		name := names([]string{in.Path})
		if p, err := store.ParsePath(in.Path); err == nil {
			if o := d.pair[p]; !o.IsZero() {
				name = o.Name()
			} else if _, changed := d.pair[p]; !changed {
				name = p.Name() // unchanged input: same path on both sides
			}
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
		out = append(out, names([]string{in.Path})+"!"+strings.Join(in.Outputs, ","))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}
