package bench

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nbuild/nbuild/sched"
)

// SchedWorkload is a synthetic cross-platform build: a job graph shaped
// like a package set (per-system bootstrap chains, libraries with
// preferential attachment, cross-built jobs that need x86 build tools),
// log-normal durations with a few multi-hour giants, the true durations,
// and five builders of mixed systems and speeds.
type SchedWorkload struct {
	Jobs     []sched.Job
	Machines []sched.Machine
	// Durations are the true build times at speed factor 1; the jobs'
	// Expected values are these with a log-normal estimation error.
	Durations []time.Duration
	// Bandwidth is bytes per second to each machine.
	Bandwidth []float64
}

// SchedParams shapes a SchedWorkload.
type SchedParams struct {
	// Jobs is the number of jobs (default 3000); Seed seeds everything.
	Jobs int
	Seed uint64
	// EstimateError is the sigma of the log-normal factor between true
	// and expected durations (0: the scheduler knows them exactly).
	EstimateError float64
	// Median is the median duration of an ordinary package (default
	// 20 s; the giants take 75 min to 3 h whatever it is). 20 s makes the
	// longest chain the bound; 60 s makes the builders' capacity about as
	// tight.
	Median time.Duration
}

// NewSchedWorkload generates a workload.
func NewSchedWorkload(p SchedParams) *SchedWorkload {
	n := p.Jobs
	if n <= 0 {
		n = 3000
	}
	if p.Median <= 0 {
		p.Median = 20 * time.Second
	}
	estimateError := p.EstimateError
	r := rand.New(rand.NewPCG(p.Seed, 0x5c4ed))
	w := &SchedWorkload{
		Machines: []sched.Machine{
			{URI: "daemon", Local: true, Systems: []string{"x86_64-linux", "i686-linux"}, MaxJobs: 4, SpeedFactor: 1,
				SupportedFeatures: []string{"benchmark", "big-parallel", "nixos-test"}},
			{URI: "ssh://x86-fast", Systems: []string{"x86_64-linux", "i686-linux"}, MaxJobs: 8, SpeedFactor: 2,
				SupportedFeatures: []string{"benchmark", "big-parallel", "kvm", "nixos-test"}},
			{URI: "ssh://big", Systems: []string{"x86_64-linux"}, MaxJobs: 4, SpeedFactor: 4,
				SupportedFeatures: []string{"kvm"}, MandatoryFeatures: []string{"big-parallel"}},
			{URI: "ssh://arm", Systems: []string{"aarch64-linux"}, MaxJobs: 6, SpeedFactor: 2,
				SupportedFeatures: []string{"big-parallel"}},
			{URI: "ssh://arm-board", Systems: []string{"aarch64-linux", "armv7l-linux"}, MaxJobs: 2, SpeedFactor: 1},
		},
		Bandwidth: []float64{math.Inf(1), 125e6, 125e6, 60e6, 12.5e6},
	}
	type sys struct {
		platform sched.Platform
		share    float64
	}
	systems := []sys{
		{sched.MustPlatform("x86_64-linux"), 0.62},
		{sched.MustPlatform("aarch64-linux"), 0.28},
		{sched.MustPlatform("i686-linux"), 0.06},
		{sched.MustPlatform("armv7l-linux"), 0.04},
	}
	bySystem := make([][]int, len(systems))
	pickSystem := func() int {
		x := r.Float64()
		for i, s := range systems {
			if x < s.share {
				return i
			}
			x -= s.share
		}
		return 0
	}
	add := func(j sched.Job, sysIdx int, d time.Duration) int {
		id := len(w.Jobs)
		noise := math.Exp(r.NormFloat64() * estimateError)
		j.Expected = time.Duration(float64(d) * noise)
		w.Jobs = append(w.Jobs, j)
		w.Durations = append(w.Durations, d)
		bySystem[sysIdx] = append(bySystem[sysIdx], id)
		return id
	}
	logNormal := func(median time.Duration, sigma float64) time.Duration {
		return time.Duration(float64(median) * math.Exp(r.NormFloat64()*sigma))
	}
	size := func() int64 { return int64(5e6 * math.Exp(r.NormFloat64()*1.3)) }
	// Bootstrap chains: 12 sequential stages per system.
	stdenv := make([]int, len(systems))
	for si, s := range systems {
		prev := -1
		for k := 0; k < 12; k++ {
			j := sched.Job{Name: fmt.Sprintf("bootstrap-stage%d-%s", k, s.platform.System()), Platform: s.platform,
				OutputBytes: size(), InputBytes: 1e6}
			if prev >= 0 {
				j.Deps = []int{prev}
			}
			prev = add(j, si, logNormal(40*time.Second, 0.8))
		}
		stdenv[si] = prev
	}
	// Giants: compilers and browsers, each big-parallel, needing only the
	// bootstrap, early in the graph so that much depends on them.
	giants := []struct {
		sys int
		d   time.Duration
	}{{0, 3 * time.Hour}, {0, 2 * time.Hour}, {1, 3 * time.Hour}, {0, 90 * time.Minute}, {1, 75 * time.Minute}}
	for gi, g := range giants {
		s := systems[g.sys]
		p := sched.MustPlatform(s.platform.System(), "big-parallel")
		add(sched.Job{Name: fmt.Sprintf("giant%d-1.0", gi), Platform: p, Deps: []int{stdenv[g.sys]},
			OutputBytes: 400e6, InputBytes: 200e6}, g.sys, g.d)
	}
	for len(w.Jobs) < n {
		si := pickSystem()
		s := systems[si]
		pool := bySystem[si]
		j := sched.Job{Name: fmt.Sprintf("pkg%d-%d.%d", len(w.Jobs), r.IntN(9), r.IntN(20)), Platform: s.platform,
			OutputBytes: size(), InputBytes: int64(1e6 * math.Exp(r.NormFloat64()))}
		switch x := r.Float64(); {
		case x < 0.02 && si <= 1:
			j.Platform = sched.MustPlatform(s.platform.System(), "big-parallel")
		case x < 0.03 && si == 0:
			j.Platform = sched.MustPlatform("x86_64-linux", "kvm", "nixos-test")
		case x < 0.05:
			j.PreferLocal = true
		}
		nDeps := 1 + r.IntN(5)
		seen := map[int]bool{}
		for k := 0; k < nDeps; k++ {
			// Preferential attachment to earlier jobs of the system,
			// skewed towards the most recent; now and then an x86 build
			// tool (cross compilation).
			from := pool
			if si != 0 && r.IntN(8) == 0 {
				from = bySystem[0]
			}
			d := from[len(from)-1-int(float64(len(from))*math.Pow(r.Float64(), 2.5))]
			if !seen[d] {
				seen[d] = true
				j.Deps = append(j.Deps, d)
			}
		}
		add(j, si, logNormal(p.Median, 1.2))
	}
	// Ids are Nix's discovery order, which knows nothing of durations:
	// shuffle them so that the giants are not conveniently first.
	perm := r.Perm(len(w.Jobs))
	jobs := make([]sched.Job, len(w.Jobs))
	durs := make([]time.Duration, len(w.Jobs))
	for old, j := range w.Jobs {
		for k, d := range j.Deps {
			j.Deps[k] = perm[d]
		}
		jobs[perm[old]] = j
		durs[perm[old]] = w.Durations[old]
	}
	w.Jobs, w.Durations = jobs, durs
	return w
}

// Options returns scheduler options with the workload's bandwidths.
func (w *SchedWorkload) Options(p sched.Policy) sched.Options {
	return sched.Options{Policy: p, Bandwidth: func(m int) float64 { return w.Bandwidth[m] }}
}

// SchedResult is one simulation's outcome.
type SchedResult struct {
	Makespan, LowerBound time.Duration
}

// SimulateSched runs the workload under a policy.
func (w *SchedWorkload) SimulateSched(p sched.Policy) (*sched.Timeline, SchedResult, error) {
	tl, err := sched.Simulate(w.Jobs, w.Machines, w.Durations, sched.SimOptions{Options: w.Options(p)})
	if err != nil {
		return nil, SchedResult{}, err
	}
	return tl, SchedResult{Makespan: tl.Makespan, LowerBound: tl.LowerBound}, nil
}

// SchedMakespan benchmarks a simulated run of w under the critical-path
// policy (planning plus every Assign and Done: the scheduler's overhead,
// reported per job as "ns/job") and reports the makespan against the
// simple lower bound ("x-bound"), the tighter TightLowerBound
// ("x-tightbound") and Nix's policy ("nix/nbuild").
func SchedMakespan(b *testing.B, w *SchedWorkload) {
	_, nix, err := w.SimulateSched(sched.PolicyNix)
	if err != nil {
		b.Fatal(err)
	}
	tight, err := TightLowerBound(w.Jobs, w.Machines, w.Durations)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var res *sched.Timeline
	for b.Loop() {
		tl, err := sched.Simulate(w.Jobs, w.Machines, w.Durations, sched.SimOptions{Options: w.Options(sched.PolicyCriticalPath)})
		if err != nil {
			b.Fatal(err)
		}
		res = tl
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(w.Jobs)), "ns/job")
	b.ReportMetric(res.Makespan.Seconds()/res.LowerBound.Seconds(), "x-bound")
	b.ReportMetric(res.Makespan.Seconds()/tight.Seconds(), "x-tightbound")
	b.ReportMetric(nix.Makespan.Seconds()/res.Makespan.Seconds(), "nix/nbuild")
}

// TightLowerBound is a lower bound on the makespan at least as high as
// Plan.LowerBound: for every job j, the earliest j can finish (its longest
// chain of ancestors, each on its fastest capable machine) plus the work
// of those of its descendants confined to a set of machines S over S's
// capacity, for S each distinct capable set and all machines. No
// descendant can start before j ends.
func TightLowerBound(jobs []sched.Job, machines []sched.Machine, dur []time.Duration) (time.Duration, error) {
	plan, err := sched.NewPlan(jobs, machines)
	if err != nil {
		return 0, err
	}
	n := len(jobs)
	speed := make([]float64, n)
	for j := range jobs {
		for _, m := range plan.Capable(j) {
			speed[j] = max(speed[j], float64(machines[m].SpeedFactor))
		}
	}
	dependents := make([][]int, n)
	pending := make([]int, n)
	var order []int
	for j := range jobs {
		pending[j] = len(jobs[j].Deps)
		if pending[j] == 0 {
			order = append(order, j)
		}
		for _, d := range jobs[j].Deps {
			dependents[d] = append(dependents[d], j)
		}
	}
	for i := 0; i < len(order); i++ {
		for _, k := range dependents[order[i]] {
			if pending[k]--; pending[k] == 0 {
				order = append(order, k)
			}
		}
	}
	finish := make([]float64, n)
	for _, j := range order {
		var start float64
		for _, d := range jobs[j].Deps {
			start = max(start, finish[d])
		}
		finish[j] = start + float64(dur[j])/speed[j]
	}
	words := (n + 63) / 64
	desc := make([]uint64, n*words)
	// Classes: the distinct capable sets; candidate sets: each class and
	// all machines.
	classIdx := map[string]int{}
	classOf := make([]int, n)
	var classes [][]int32
	for j := range jobs {
		k := fmt.Sprint(plan.Capable(j))
		c, ok := classIdx[k]
		if !ok {
			c = len(classes)
			classIdx[k] = c
			classes = append(classes, plan.Capable(j))
		}
		classOf[j] = c
	}
	type machineSet struct {
		in       []bool
		capacity float64
	}
	var sets []machineSet
	all := make([]int32, len(machines))
	for m := range all {
		all[m] = int32(m)
	}
	for _, c := range append(classes, all) {
		set := machineSet{in: make([]bool, len(machines))}
		for _, m := range c {
			set.in[m] = true
			set.capacity += float64(machines[m].MaxJobs) * float64(machines[m].SpeedFactor)
		}
		sets = append(sets, set)
	}
	classWork := make([]float64, len(classes))
	bound := float64(plan.LowerBound(dur))
	for i := n - 1; i >= 0; i-- {
		j := order[i]
		row := desc[j*words : (j+1)*words]
		for _, k := range dependents[j] {
			row[k/64] |= 1 << (k % 64)
			for w, x := range desc[k*words : (k+1)*words] {
				row[w] |= x
			}
		}
		for c := range classWork {
			classWork[c] = 0
		}
		for w, x := range row {
			for x != 0 {
				b := x & -x
				k := w*64 + bits.TrailingZeros64(b)
				x &^= b
				classWork[classOf[k]] += float64(dur[k])
			}
		}
		// For every candidate set of machines S, the descendants confined
		// to S need their work / capacity(S) after j.
		for _, set := range sets {
			var work float64
			for c, cw := range classWork {
				if cw > 0 && subset(classes[c], set.in) {
					work += cw
				}
			}
			if set.capacity > 0 {
				bound = max(bound, finish[j]+work/set.capacity)
			}
		}
	}
	return time.Duration(bound), nil
}

func subset(ms []int32, in []bool) bool {
	for _, m := range ms {
		if !in[m] {
			return false
		}
	}
	return true
}

// schedCases simulate workloads of 3,000 and 10,000 jobs whose ordinary
// packages take 20 s or 60 s (median).
func schedCases(context.Context, Env) ([]Case, error) {
	var cases []Case
	for _, n := range []int{3000, 10000} {
		for _, med := range []time.Duration{20 * time.Second, 60 * time.Second} {
			w := NewSchedWorkload(SchedParams{Jobs: n, Seed: 1, EstimateError: 0.3, Median: med})
			cases = append(cases, Case{fmt.Sprintf("jobs=%d/median=%v", n, med), func(b *testing.B) { SchedMakespan(b, w) }})
		}
	}
	return cases, nil
}
