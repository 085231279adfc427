package sched

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrUnbuildable is wrapped by the error NewPlan returns when some job has
// no machine that may build it.
var ErrUnbuildable = errors.New("sched: no capable builder")

// ErrBadGraph is wrapped by NewPlan's errors about the job graph itself: a
// dependency id out of range, or a cycle.
var ErrBadGraph = errors.New("sched: bad job graph")

// Job is one derivation to build. Its id is its index in the slice given
// to NewPlan; Deps are ids of jobs whose outputs it needs. The consumer
// (eval/graph, the simulator) defines the graph; sched only reads it.
type Job struct {
	// Name is the derivation name ("hello-2.12"), for messages.
	Name string
	// Platform is the system and required features.
	Platform Platform
	// PreferLocal is the derivation's preferLocalBuild: build on the
	// local machine when it can.
	PreferLocal bool
	// Deps are the ids of the jobs this one needs built first.
	Deps []int
	// Expected is the estimated build time on a machine of speed factor 1.
	Expected time.Duration
	// InputBytes is the size of the job's input sources (they start on
	// the coordinating host); OutputBytes the size of its outputs.
	InputBytes, OutputBytes int64
}

// Unbuildable names a job no machine may build, and why.
type Unbuildable struct {
	Job    int
	Name   string
	Reason string
}

// UnbuildableError lists every job of a plan that has no capable machine.
type UnbuildableError struct {
	Jobs []Unbuildable
}

func (e *UnbuildableError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d derivation(s) cannot be built on any builder:", len(e.Jobs))
	for _, u := range e.Jobs {
		fmt.Fprintf(&b, "\n  %s: %s", u.Name, u.Reason)
	}
	return b.String()
}

func (e *UnbuildableError) Unwrap() error { return ErrUnbuildable }

// Plan is a job graph checked against a set of machines: every job has at
// least one capable machine, the graph is acyclic, and each job has a
// critical-path priority. A Plan is immutable; Schedulers share it.
type Plan struct {
	Jobs     []Job
	Machines []Machine

	capable    [][]int32       // per job: machine indexes allowed to build it
	class      []int32         // per job: index of its capable set in classes
	classes    [][]int32       // the distinct capable sets
	dependents [][]int32       // per job: jobs that depend on it
	rank       []time.Duration // per job: longest expected path from its start to the end of the plan
	order      []int32         // a topological order (dependencies first)
	local      int             // index of the local machine, or -1
}

// NewPlan checks jobs against machines. Matching is CanBuild's; a
// PreferLocal job whose platform the local machine can build is given to
// the local machine only, as Nix does. When some jobs have no capable
// machine NewPlan returns an *UnbuildableError listing all of them.
func NewPlan(jobs []Job, machines []Machine) (*Plan, error) {
	p := &Plan{Jobs: jobs, Machines: machines, local: -1}
	for i := range machines {
		if machines[i].Local {
			p.local = i
			break
		}
	}
	n := len(jobs)
	p.capable = make([][]int32, n)
	p.dependents = make([][]int32, n)
	// Capable sets and classes are computed once per platform; jobs share
	// the slices.
	type platformInfo struct {
		capable []int32
		class   int32
	}
	byPlatform := map[Platform]platformInfo{}
	classOf := map[string]int32{}
	classFor := func(c []int32) int32 {
		k := fmt.Sprint(c)
		cl, ok := classOf[k]
		if !ok {
			cl = int32(len(p.classes))
			classOf[k] = cl
			p.classes = append(p.classes, c)
		}
		return cl
	}
	var localOnly []int32
	var localClass int32
	p.class = make([]int32, n)
	// Dependents are counted first and carved from one array: appending
	// them job by job was 100,000 small slices at 100,000 jobs.
	count, total := make([]int32, n), 0
	for id := range jobs {
		j := &jobs[id]
		for _, d := range j.Deps {
			if d < 0 || d >= n || d == id {
				return nil, fmt.Errorf("%w: job %d (%s) depends on %d", ErrBadGraph, id, j.Name, d)
			}
			count[d]++
		}
		total += len(j.Deps)
	}
	all := make([]int32, 0, total)
	for id, c := range count {
		p.dependents[id] = all[len(all) : len(all) : len(all)+int(c)]
		all = all[:len(all)+int(c)]
	}
	for id := range jobs {
		for _, d := range jobs[id].Deps {
			p.dependents[d] = append(p.dependents[d], int32(id))
		}
	}
	var unbuildable []Unbuildable
	for id := range jobs {
		j := &jobs[id]
		if j.Platform.IsZero() {
			return nil, fmt.Errorf("%w: job %d (%s) has no platform", ErrBadGraph, id, j.Name)
		}
		if j.PreferLocal && p.local >= 0 && CanBuild(&machines[p.local], j.Platform) {
			if localOnly == nil {
				localOnly = []int32{int32(p.local)}
				localClass = classFor(localOnly)
			}
			p.capable[id], p.class[id] = localOnly, localClass
			continue
		}
		info, ok := byPlatform[j.Platform]
		if !ok {
			for m := range machines {
				if CanBuild(&machines[m], j.Platform) {
					info.capable = append(info.capable, int32(m))
				}
			}
			if len(info.capable) > 0 {
				info.class = classFor(info.capable)
			}
			byPlatform[j.Platform] = info
		}
		if len(info.capable) == 0 {
			unbuildable = append(unbuildable, Unbuildable{Job: id, Name: j.Name, Reason: Why(j.Platform, machines)})
		}
		p.capable[id], p.class[id] = info.capable, info.class
	}
	if len(unbuildable) > 0 {
		return nil, &UnbuildableError{Jobs: unbuildable}
	}
	if err := p.topoSort(); err != nil {
		return nil, err
	}
	p.rank = make([]time.Duration, n)
	for i := n - 1; i >= 0; i-- {
		id := p.order[i]
		var after time.Duration
		for _, k := range p.dependents[id] {
			after = max(after, p.rank[k])
		}
		p.rank[id] = p.effective(int(id)) + after
	}
	return p, nil
}

// topoSort fills p.order (Kahn's algorithm) or reports a cycle.
func (p *Plan) topoSort() error {
	n := len(p.Jobs)
	pending := make([]int32, n)
	p.order = make([]int32, 0, n)
	for id := range p.Jobs {
		pending[id] = int32(len(p.Jobs[id].Deps))
		if pending[id] == 0 {
			p.order = append(p.order, int32(id))
		}
	}
	for i := 0; i < len(p.order); i++ {
		for _, k := range p.dependents[p.order[i]] {
			if pending[k]--; pending[k] == 0 {
				p.order = append(p.order, k)
			}
		}
	}
	if len(p.order) != n {
		for id := range p.Jobs {
			if pending[id] > 0 {
				return fmt.Errorf("%w: cycle through job %d (%s)", ErrBadGraph, id, p.Jobs[id].Name)
			}
		}
	}
	return nil
}

// effective is a job's expected duration at the slot-weighted mean speed
// of the machines that may build it: the weight its critical path uses.
func (p *Plan) effective(id int) time.Duration {
	var slots, speed float64
	for _, m := range p.capable[id] {
		mm := &p.Machines[m]
		slots += float64(mm.MaxJobs)
		speed += float64(mm.MaxJobs) * float64(mm.SpeedFactor)
	}
	if slots == 0 {
		return p.Jobs[id].Expected
	}
	return time.Duration(float64(p.Jobs[id].Expected) * slots / speed)
}

// Capable returns the indexes of the machines that may build job id.
func (p *Plan) Capable(id int) []int32 { return p.capable[id] }

// Rank is job id's critical-path priority: the expected time from its
// start to the end of the longest chain of jobs that depends on it.
func (p *Plan) Rank(id int) time.Duration { return p.rank[id] }

// CriticalPath is the expected length of the longest chain of the plan.
func (p *Plan) CriticalPath() time.Duration {
	var cp time.Duration
	for _, r := range p.rank {
		cp = max(cp, r)
	}
	return cp
}

// LowerBound is a bound no schedule can beat, for true durations dur (at
// speed factor 1, indexed by job id): the longest chain with every job on
// its fastest capable machine, and, for every set C of machines some job
// is confined to, the work of the jobs confined to C divided by C's
// capacity (slots × speed). With C = all machines this is total work /
// capacity. Transfers are not counted.
func (p *Plan) LowerBound(dur []time.Duration) time.Duration {
	n := len(p.Jobs)
	fastest := make([]float64, len(p.classes))
	for c, ms := range p.classes {
		for _, m := range ms {
			fastest[c] = max(fastest[c], float64(p.Machines[m].SpeedFactor))
		}
	}
	path := make([]float64, n)
	var cp float64
	for i := n - 1; i >= 0; i-- {
		id := p.order[i]
		var after float64
		for _, k := range p.dependents[id] {
			after = max(after, path[k])
		}
		path[id] = float64(dur[id])/fastest[p.class[id]] + after
		cp = max(cp, path[id])
	}
	bound := cp
	classWork := make([]float64, len(p.classes))
	for id := range p.Jobs {
		classWork[p.class[id]] += float64(dur[id])
	}
	all := make([]int32, len(p.Machines))
	for m := range all {
		all[m] = int32(m)
	}
	in := make([]bool, len(p.Machines))
	for _, set := range append(p.classes[:len(p.classes):len(p.classes)], all) {
		clear(in)
		var capacity float64
		for _, m := range set {
			in[m] = true
			capacity += float64(p.Machines[m].MaxJobs) * float64(p.Machines[m].SpeedFactor)
		}
		var work float64
	classes:
		for c, ms := range p.classes {
			for _, m := range ms {
				if !in[m] {
					continue classes
				}
			}
			work += classWork[c]
		}
		if capacity > 0 {
			bound = max(bound, work/capacity)
		}
	}
	return time.Duration(bound)
}
