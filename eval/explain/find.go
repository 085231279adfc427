package explain

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nbuild/nbuild/store"
)

// ErrNoMatch is returned by Find when nothing in the closure has the name.
var ErrNoMatch = errors.New("explain: no derivation or source of that name in the closure")

// Match is a path of the closure that a name matches.
type Match struct {
	Path store.Path
	// From is a derivation that has Path as an input, found first by a
	// depth-first walk from the roots (zero for a root): it tells apart
	// matches of one name, such as the many "source" tarballs.
	From store.Path
}

// AmbiguousError is returned by Find when several paths of the closure
// have the name: the caller picks one of Matches.
type AmbiguousError struct {
	Name    string
	Matches []Match // sorted by path
}

func (e *AmbiguousError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d paths in the closure match %q; pick one by its path:", len(e.Matches), e.Name)
	for _, m := range e.Matches {
		b.WriteString("\n  ")
		b.WriteString(m.Path.String())
		if !m.From.IsZero() {
			fmt.Fprintf(&b, " (input of %s)", m.From.Name())
		}
	}
	return b.String()
}

// Find looks for name among the derivations and input sources of the
// closure of roots and returns the one that matches. A derivation matches
// by its name ("perl-5.36.0", with or without ".drv") or, when nothing
// matches so, by its package name, the name without version as Nix's
// DrvName splits it ("perl" matches perl-5.36.0 and perl-5.36.0.tar.xz,
// not perl-aarch64-unknown-linux-gnu-5.36.0); an input source matches by
// its name. Several matches are an *AmbiguousError listing them, none is
// ErrNoMatch.
func Find(roots []store.Path, name string, load Loader) (store.Path, error) {
	ms, err := Matches(roots, name, load)
	if err != nil {
		return store.Path{}, err
	}
	switch len(ms) {
	case 0:
		return store.Path{}, fmt.Errorf("%w: %q", ErrNoMatch, name)
	case 1:
		return ms[0].Path, nil
	}
	return store.Path{}, &AmbiguousError{Name: name, Matches: ms}
}

// Matches returns every path of the closure of roots that name matches as
// Find describes it, sorted.
func Matches(roots []store.Path, name string, load Loader) ([]Match, error) {
	exact, byPackage := map[store.Path]bool{}, map[store.Path]bool{}
	seen := map[store.Path]bool{}
	from := map[store.Path]store.Path{}
	match := func(p store.Path) {
		n := p.Name()
		if !p.IsDerivation() {
			if n == name {
				exact[p] = true
			}
			return
		}
		n = strings.TrimSuffix(n, ".drv")
		switch {
		case n == name || n+".drv" == name:
			exact[p] = true
		case packageName(p) == name:
			byPackage[p] = true
		}
	}
	todo := append([]store.Path(nil), roots...)
	for _, r := range roots {
		seen[r] = true
	}
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		match(p)
		if !p.IsDerivation() {
			continue
		}
		d, err := load(p)
		if err != nil {
			return nil, err
		}
		visit := func(q store.Path) {
			if !seen[q] {
				seen[q], from[q] = true, p
				todo = append(todo, q)
			}
		}
		for _, in := range d.InputDrvs {
			visit(in.Path)
		}
		for _, s := range d.InputSrcs {
			q, err := store.ParsePath(s)
			if err != nil {
				return nil, fmt.Errorf("derivation %s: input %w", p, err)
			}
			visit(q)
		}
	}
	set := exact
	if len(set) == 0 {
		set = byPackage
	}
	ps := make([]store.Path, 0, len(set))
	for p := range set {
		ps = append(ps, p)
	}
	store.SortPaths(ps)
	out := make([]Match, len(ps))
	for i, p := range ps {
		out[i] = Match{Path: p, From: from[p]}
	}
	return out, nil
}
