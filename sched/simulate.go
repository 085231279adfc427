package sched

import (
	"container/heap"
	"errors"
	"fmt"
	"time"
)

// ErrStuck is returned by Simulate when the scheduler neither finishes nor
// has anything to wait for (a scheduler bug, reported rather than looped).
var ErrStuck = errors.New("sched: simulation stuck")

// Outage takes a machine down at a point of simulated time.
type Outage struct {
	Machine int
	At      time.Duration
}

// SimOptions configures Simulate.
type SimOptions struct {
	Options
	// Fail, when set, says which jobs' builds fail.
	Fail func(job int) bool
	// Outages are machines going down (MachineDown) during the run.
	Outages []Outage
}

// Simulate runs jobs on machines in virtual time with the same Scheduler a
// real build uses: it starts what Assign returns, and reports each build
// as done after dur[job]/speedFactor plus the assignment's expected
// transfer time. dur holds the true durations at speed factor 1 (the
// scheduler only sees Job.Expected). It returns what ran where and when;
// an unbuildable plan is refused as NewPlan refuses it.
func Simulate(jobs []Job, machines []Machine, dur []time.Duration, opts SimOptions) (*Timeline, error) {
	if len(dur) != len(jobs) {
		return nil, fmt.Errorf("sched: %d durations for %d jobs", len(dur), len(jobs))
	}
	plan, err := NewPlan(jobs, machines)
	if err != nil {
		return nil, err
	}
	return SimulatePlan(plan, dur, opts)
}

// SimulatePlan is Simulate for a plan already made.
func SimulatePlan(plan *Plan, dur []time.Duration, opts SimOptions) (*Timeline, error) {
	s := NewScheduler(plan, opts.Options)
	tl := newTimeline(plan, opts.Policy)
	epoch := time.Unix(0, 0).UTC()
	var q simQueue
	seq := 0
	for _, o := range opts.Outages {
		heap.Push(&q, simEvent{at: o.At, seq: seq, down: true, a: Assignment{Machine: o.Machine}})
		seq++
	}
	var now time.Duration
	for {
		for _, a := range s.Assign(epoch.Add(now)) {
			m := &plan.Machines[a.Machine]
			ev := simEvent{at: now + a.Transfer + dur[a.Job]/time.Duration(m.SpeedFactor), seq: seq, a: a}
			if opts.Fail != nil && opts.Fail(a.Job) {
				ev.outcome = Failed
			}
			heap.Push(&q, ev)
			seq++
		}
		if s.Finished() {
			break
		}
		if q.Len() == 0 {
			at, ok := s.Wake(epoch.Add(now))
			if !ok {
				return tl, fmt.Errorf("%w at %v with %d running", ErrStuck, now, s.Running())
			}
			now = at.Sub(epoch)
			continue
		}
		ev := heap.Pop(&q).(simEvent)
		if w, ok := s.Wake(epoch.Add(now)); ok && w.Sub(epoch) < ev.at {
			heap.Push(&q, ev)
			now = w.Sub(epoch)
			continue
		}
		now = ev.at
		if ev.down {
			for _, a := range s.MachineDown(ev.a.Machine, epoch.Add(now)) {
				tl.add(plan, a.Job, a.Machine, a.Slot, a.Start.Sub(epoch), now, MachineLost)
			}
			continue
		}
		if s.current(ev.a) {
			tl.add(plan, ev.a.Job, ev.a.Machine, ev.a.Slot, ev.a.Start.Sub(epoch), now, ev.outcome)
		}
		s.Done(ev.a, ev.outcome, "", epoch.Add(now))
	}
	tl.LowerBound = plan.LowerBound(dur)
	return tl, s.Err()
}

type simEvent struct {
	at      time.Duration
	seq     int
	a       Assignment
	outcome Outcome
	down    bool
}

type simQueue []simEvent

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)   { *q = append(*q, x.(simEvent)) }
func (q *simQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}
