package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nbuild/nbuild/eval/explain"
	"github.com/nbuild/nbuild/store"
)

// runWhy prints the shortest chains from the roots to target: a store path
// (.drv, output or source, possibly inside the chroot store directory), or
// the name of a derivation or source in the closure ("perl-5.36.0", or
// "perl" when only one derivation has that package name). Several matches
// are listed, and the user picks one by its path.
func runWhy(ctx context.Context, w io.Writer, root storeRoot, roots []store.Path, target, format string) error {
	load := explain.DirLoader(string(root))
	var tp store.Path
	if strings.Contains(target, "/") {
		t := target
		if root != "" {
			t = strings.TrimPrefix(t, string(root))
		}
		p, _, err := store.SplitPath(t)
		if err != nil {
			return fmt.Errorf("--why %s: %w", target, err)
		}
		tp = p
	} else {
		p, err := explain.Find(roots, target, load)
		var amb *explain.AmbiguousError
		switch {
		case errors.As(err, &amb):
			return fmt.Errorf("--why %s: %w", target, err)
		case errors.Is(err, explain.ErrNoMatch):
			return fmt.Errorf("--why %s: no derivation or source named %q (with or without version) in the closure of %s", target, target, joinPaths(roots))
		case err != nil:
			return err
		}
		tp = p
	}
	r, err := explain.Why(ctx, roots, tp, load, 0)
	if errors.Is(err, explain.ErrNotInClosure) {
		return fmt.Errorf("%s is not in the closure of %s", tp, joinPaths(roots))
	}
	if err != nil {
		return err
	}
	if format == "json" {
		type stepJSON struct {
			Path string   `json:"path"`
			Via  []string `json:"via,omitempty"`
		}
		var chains [][]stepJSON
		for _, c := range r.Chains {
			var cj []stepJSON
			for _, s := range c {
				cj = append(cj, stepJSON{Path: s.Path.String(), Via: s.Via})
			}
			chains = append(chains, cj)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"target": tp.String(), "output": r.Output, "total": r.Total, "chains": chains})
	}
	what := tp.String()
	if r.Output != "" {
		what += fmt.Sprintf(" (output %q of the last derivation)", r.Output)
	}
	steps := len(r.Chains[0]) - 1
	fmt.Fprintf(w, "%s is in the closure through %d shortest chain(s) of %d step(s)", what, r.Total, steps)
	if uint64(len(r.Chains)) < r.Total {
		fmt.Fprintf(w, "; showing %d", len(r.Chains))
	}
	fmt.Fprintln(w, ":")
	for i, c := range r.Chains {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "chain %d:\n", i+1)
		for j, s := range c {
			if j == 0 {
				fmt.Fprintf(w, "  %s\n", s.Path)
				continue
			}
			via := "uses " + strings.Join(s.Via, ",") + " of"
			if len(s.Via) == 1 && s.Via[0] == "source" {
				via = "has source"
			}
			fmt.Fprintf(w, "  %s└─ %s %s\n", strings.Repeat("   ", j-1), via, s.Path)
		}
	}
	return nil
}

func joinPaths(ps []store.Path) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ", ")
}

// runDiff compares the plan of roots with the plan of old. The diff has
// no tree or DOT form: those formats are refused rather than ignored.
func runDiff(ctx context.Context, w io.Writer, root storeRoot, roots, old []store.Path, format string) error {
	if format == "tree" || format == "dot" {
		return usagef("graph: --diff prints a summary or JSON, not --format %s", format)
	}
	load := explain.DirLoader(string(root))
	r, err := explain.Diff(ctx, roots, old, load, load)
	if err != nil {
		return err
	}
	if format == "json" {
		return explain.WriteDiffJSON(w, r)
	}
	return explain.WriteDiffText(w, r)
}
