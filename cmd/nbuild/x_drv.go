package main

import (
	"context"

	"github.com/nbuild/nbuild/eval/drv"
)

// LoadAll loads the derivations at paths with load, keyed by path; with
// closure set, their closures too (Closure).
func LoadAll(ctx context.Context, paths []string, load drv.Loader, closure bool) (map[string]*drv.Derivation, error) {
	if closure {
		return drv.Closure(ctx, paths, load)
	}
	res := make(map[string]*drv.Derivation, len(paths))
	for _, p := range paths {
		d, err := load(p)
		if err != nil {
			return nil, err
		}
		res[p] = d
	}
	return res, nil
}
