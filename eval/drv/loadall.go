package drv

import "context"

// LoadAll loads the derivations at paths with load, keyed by path; with
// closure set, their closures too (Closure).
func LoadAll(ctx context.Context, paths []string, load Loader, closure bool) (map[string]*Derivation, error) {
	if closure {
		return Closure(ctx, paths, load)
	}
	res := make(map[string]*Derivation, len(paths))
	for _, p := range paths {
		d, err := load(p)
		if err != nil {
			return nil, err
		}
		res[p] = d
	}
	return res, nil
}
