package explain

import (
	"context"
	"fmt"
	"strings"

	"github.com/nbuild/nbuild/store"
)

// Step is one link of a dependency chain: Path is needed by the previous
// step through Via: the output names it uses of Path when Path is an input
// derivation, or "source" when it is an input source.
type Step struct {
	Path store.Path
	Via  []string
}

// WhyResult holds the shortest chains from a root to the target.
type WhyResult struct {
	// Target is the path asked about; Output is set when Target is an
	// output path, and names the output of the chain's last derivation.
	Target store.Path
	Output string
	// Chains are shortest chains, each starting at a root and ending at
	// the derivation (or source) that is or produces Target.
	Chains [][]Step
	// Total is how many shortest chains exist (saturating at 1<<62);
	// Chains holds at most the limit asked for.
	Total uint64
}

// Why finds the shortest dependency chains from roots to target, a .drv,
// an output path of a derivation in the closure, or an input source. It
// returns at most limit chains (limit <= 0 means 10) in a deterministic
// order, and ErrNotInClosure when target is not reachable. It stops with
// ctx's error when ctx is done.
func Why(ctx context.Context, roots []store.Path, target store.Path, load Loader, limit int) (*WhyResult, error) {
	if limit <= 0 {
		limit = 10
	}
	type pred struct {
		from store.Path
		via  []string
	}
	dist := map[store.Path]int{}
	preds := map[store.Path][]pred{}
	count := map[store.Path]uint64{}
	var frontier []store.Path
	for _, r := range roots {
		if _, ok := dist[r]; !ok {
			dist[r] = 0
			count[r] = 1
			frontier = append(frontier, r)
		}
	}
	res := &WhyResult{Target: target}
	var found []store.Path
	// Breadth-first by levels; stop after the level where target appears.
	for len(frontier) > 0 && len(found) == 0 {
		var next []store.Path
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for _, p := range frontier {
			if p == target {
				found = append(found, p)
				continue
			}
			if !p.IsDerivation() {
				continue
			}
			d, err := load(p)
			if err != nil {
				return nil, err
			}
			for _, o := range d.Outputs {
				if o.Path == target {
					found = append(found, p)
					res.Output = o.Name
				}
			}
			edge := func(q store.Path, via []string) {
				dq, seen := dist[q]
				if !seen {
					dist[q] = dist[p] + 1
					next = append(next, q)
				} else if dq != dist[p]+1 {
					return
				}
				preds[q] = append(preds[q], pred{from: p, via: via})
				count[q] = satAdd(count[q], count[p])
			}
			for _, in := range d.InputDrvs {
				edge(in.Path, in.Outputs)
			}
			for _, s := range d.InputSrcs {
				q, err := store.ParsePath(s)
				if err != nil {
					return nil, fmt.Errorf("derivation %s: input %w", p, err)
				}
				edge(q, []string{"source"})
			}
		}
		frontier = next
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotInClosure, target)
	}
	for _, f := range found {
		res.Total = satAdd(res.Total, count[f])
	}
	// Walk predecessors back from each end point, depth first, in the
	// order edges were discovered (roots order, then sorted inputs).
	var walk func(p store.Path, tail []Step)
	walk = func(p store.Path, tail []Step) {
		if len(res.Chains) >= limit {
			return
		}
		if dist[p] == 0 {
			res.Chains = append(res.Chains, append([]Step{{Path: p}}, tail...))
			return
		}
		for _, pr := range preds[p] {
			walk(pr.from, append([]Step{{Path: p, Via: pr.via}}, tail...))
		}
	}
	for _, f := range found {
		walk(f, nil)
	}
	return res, nil
}

func satAdd(a, b uint64) uint64 {
	const max = 1 << 62
	if a+b > max || a+b < a {
		return max
	}
	return a + b
}

// String renders a chain on one line: "a.drv -[out]-> b.drv -[source]-> c".
func (r *WhyResult) String() string {
	var b strings.Builder
	for i, c := range r.Chains {
		if i > 0 {
			b.WriteByte('\n')
		}
		for j, s := range c {
			if j > 0 {
				fmt.Fprintf(&b, " -[%s]-> ", strings.Join(s.Via, ","))
			}
			b.WriteString(s.Path.Name())
		}
	}
	return b.String()
}
