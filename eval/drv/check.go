package drv

import (
	"fmt"
)

// Check recomputes what Nix would have written for d, read from path, and
// lists every way d differs from it, as `nbuild drv check` prints them:
// the .drv path itself, each output's path, and each output's environment
// variable (missing, or with another value). It returns nil when d is
// what Nix writes at path. h computes the output paths, loading the input
// derivations as it needs.
func Check(h *Hasher, path string, d *Derivation) []string {
	var bad []string
	report := func(format string, a ...any) {
		bad = append(bad, fmt.Sprintf(format, a...))
	}
	if dp, err := DrvPath(d); err != nil {
		report("cannot compute the .drv path: %v", err)
	} else if dp.String() != path {
		report(".drv path should be %s", dp)
	}
	ops, err := h.OutputPaths(d)
	if err != nil {
		report("cannot compute output paths: %v", err)
		return bad
	}
	for i, o := range ops {
		if got, want := d.Outputs[i].Path, o.Path; got != want {
			report("output '%s' has path '%s', should be '%s'", o.Name, got, want)
		}
		if got, ok := d.Getenv(o.Name); !ok {
			report("environment variable '%s' is missing, should be '%s'", o.Name, o.EnvValue())
		} else if got != o.EnvValue() {
			report("environment variable '%s' is '%s', should be '%s'", o.Name, got, o.EnvValue())
		}
	}
	return bad
}
