package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
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
		return explain.WriteWhyJSON(w, r)
	}
	return explain.WriteWhyText(w, r)
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
	load := explain.GraphLoader(ctx, string(root), append(slices.Clone(roots), old...)) // both closures, read in parallel
	r, err := explain.Diff(ctx, roots, old, load, load)
	if err != nil {
		return err
	}
	if format == "json" {
		return explain.WriteDiffJSON(w, r)
	}
	return explain.WriteDiffText(w, r)
}
