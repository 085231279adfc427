package bench

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nbuild/nbuild/sched"
)

// TestSchedWorkloadShape checks what makes the synthetic workload
// realistic, per seed: the giants (compilers) have packages built on
// them, and the longest chain through the graph runs through a giant.
// It also logs Nix's policy against the lower bound: where that ratio is
// under 1.3, no schedule can beat Nix's by 1.3x.
func TestSchedWorkloadShape(t *testing.T) {
	for _, med := range []time.Duration{20 * time.Second, 60 * time.Second} {
		for seed := uint64(1); seed <= 5; seed++ {
			w := NewSchedWorkload(SchedParams{Seed: seed, EstimateError: 0.3, Median: med})
			n := len(w.Jobs)
			dependents := make([][]int, n)
			for j, job := range w.Jobs {
				for _, d := range job.Deps {
					dependents[d] = append(dependents[d], j)
				}
			}
			// Longest chain (true durations at speed 1) ending at / starting
			// from each job, by memoised search.
			down := make([]time.Duration, n) // job and its longest descendant chain
			seen := make([]bool, n)
			var tailOf func(j int) time.Duration
			tailOf = func(j int) time.Duration {
				if seen[j] {
					return down[j]
				}
				var best time.Duration
				for _, k := range dependents[j] {
					best = max(best, tailOf(k))
				}
				down[j], seen[j] = best+w.Durations[j], true
				return down[j]
			}
			up := make([]time.Duration, n) // job and its longest ancestor chain
			upSeen := make([]bool, n)
			var headOf func(j int) time.Duration
			headOf = func(j int) time.Duration {
				if upSeen[j] {
					return up[j]
				}
				var best time.Duration
				for _, d := range w.Jobs[j].Deps {
					best = max(best, headOf(d))
				}
				up[j], upSeen[j] = best+w.Durations[j], true
				return up[j]
			}
			var cp time.Duration
			for j := range w.Jobs {
				cp = max(cp, tailOf(j))
			}
			var giants []string
			onCP := false
			for j, job := range w.Jobs {
				if !strings.HasPrefix(job.Name, "giant") {
					continue
				}
				desc := countDesc(j, dependents)
				through := headOf(j) + tailOf(j) - w.Durations[j]
				if through == cp {
					onCP = true
				}
				giants = append(giants, job.Name+": "+itoa(desc)+" descendants, chain "+(through-w.Durations[j]).Round(time.Minute).String()+" besides")
				if desc == 0 {
					t.Errorf("median %v seed %d: %s has no dependents", med, seed, job.Name)
				}
			}
			if !onCP {
				t.Errorf("median %v seed %d: the longest chain avoids every giant", med, seed)
			}
			_, nb := simulate(t, w, sched.PolicyCriticalPath)
			_, nix := simulate(t, w, sched.PolicyNix)
			tight, err := TightLowerBound(w.Jobs, w.Machines, w.Durations)
			if err != nil {
				t.Fatal(err)
			}
			// No schedule beats the tight bound, so nix/tight is the most
			// any policy can gain over Nix's.
			room := nix.Makespan.Seconds() / tight.Seconds()
			gain := nix.Makespan.Seconds() / nb.Makespan.Seconds()
			t.Logf("median %v seed %d: longest chain %v (through a giant: %v); nix/bound %.3f, nix/tight %.3f, nix/nbuild %.3f; %s",
				med, seed, cp.Round(time.Minute), onCP, nix.Makespan.Seconds()/nb.LowerBound.Seconds(), room, gain,
				strings.Join(giants, "; "))
			if room >= 1.3 && gain < 1.3 {
				t.Errorf("median %v seed %d: 1.3x over Nix was possible (nix/tight %.3f) but nbuild gained %.3fx", med, seed, room, gain)
			}
		}
	}
}

func countDesc(j int, dependents [][]int) int {
	seen := map[int]bool{}
	stack := []int{j}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, k := range dependents[x] {
			if !seen[k] {
				seen[k] = true
				stack = append(stack, k)
			}
		}
	}
	return len(seen)
}

func itoa(n int) string { return strconv.Itoa(n) }
