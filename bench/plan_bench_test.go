package bench

import "testing"

// BenchmarkPlan times a warm `nbuild graph --store DIR` summary in one
// process (PlanStep), whole and by phase, on generated closures; it skips
// without Nix (fails with CI=true), which instantiates them the first time.
func BenchmarkPlan(b *testing.B) { runWorkload(b, "Plan") }
