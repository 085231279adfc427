package drv

import (
	"io"
	"sort"
)

// WriteShowPaths writes the derivations at paths, loaded with load, as
// `nix show-derivation` (Nix 2.8) prints them without -r: one JSON object
// keyed by path, in path order, each path once.
func WriteShowPaths(w io.Writer, paths []string, load Loader) error {
	sw := NewShowWriter(w)
	sorted := append([]string(nil), paths...)
	sort.Strings(sorted)
	for i, p := range sorted {
		if i > 0 && p == sorted[i-1] {
			continue
		}
		d, err := load(p)
		if err != nil {
			return err
		}
		if err := sw.Write(p, d); err != nil {
			return err
		}
	}
	return sw.Close()
}
