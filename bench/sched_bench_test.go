package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nbuild/nbuild/sched"
)

func BenchmarkSched(b *testing.B) { runWorkload(b, "Sched") }

// TestSchedWorkload simulates the workloads NOTES-sched.md records (go
// test -run SchedWorkload -v ./bench prints the figures). The simulation
// is deterministic, so its makespans are checked: never below the lower
// bounds, and the critical-path policy within 5% of the tight bound and no
// worse than Nix's policy. SCHED_TIMELINE_DIR=dir also writes the seed-1
// timelines as SVG and JSON.
func TestSchedWorkload(t *testing.T) {
	for _, med := range []time.Duration{20 * time.Second, 60 * time.Second} {
		for seed := uint64(1); seed <= 5; seed++ {
			w := NewSchedWorkload(SchedParams{Seed: seed, EstimateError: 0.3, Median: med})
			if len(w.Jobs) != 3000 {
				t.Fatalf("%d jobs", len(w.Jobs))
			}
			_, nb := simulate(t, w, sched.PolicyCriticalPath)
			_, nix := simulate(t, w, sched.PolicyNix)
			tight, err := TightLowerBound(w.Jobs, w.Machines, w.Durations)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("median %v seed %d: bound %v, tight bound %v, nbuild %v (%.3fx bound, %.3fx tight), nix %v (%.3fx nbuild)",
				med, seed, nb.LowerBound.Round(time.Second), tight.Round(time.Second), nb.Makespan.Round(time.Second),
				nb.Makespan.Seconds()/nb.LowerBound.Seconds(), nb.Makespan.Seconds()/tight.Seconds(),
				nix.Makespan.Round(time.Second), nix.Makespan.Seconds()/nb.Makespan.Seconds())
			if tight < nb.LowerBound || nb.Makespan < tight || nix.Makespan < tight {
				t.Errorf("a makespan beats a lower bound")
			}
			if nb.Makespan.Seconds() > 1.05*tight.Seconds() || nb.Makespan > nix.Makespan {
				t.Errorf("critical-path schedule regressed")
			}
			if dir := os.Getenv("SCHED_TIMELINE_DIR"); dir != "" && seed == 1 {
				for _, p := range []sched.Policy{sched.PolicyCriticalPath, sched.PolicyNix} {
					tl, _ := simulate(t, w, p)
					base := filepath.Join(dir, fmt.Sprintf("sched-median%v-%s", med, p))
					for ext, write := range map[string]func(f *os.File) error{
						".svg":  func(f *os.File) error { return tl.WriteSVG(f) },
						".json": func(f *os.File) error { return tl.WriteJSON(f) },
					} {
						f, err := os.Create(base + ext)
						if err != nil {
							t.Fatal(err)
						}
						if err := write(f); err != nil {
							t.Fatal(err)
						}
						f.Close()
					}
				}
			}
		}
	}
}
