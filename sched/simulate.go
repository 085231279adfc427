package sched

import (
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
	// The scheduler's clock is offsets from the epoch, so the simulation
	// calls its methods on offsets, without time.Time arithmetic.
	epoch := time.Unix(0, 0).UTC()
	s.base, s.haveBase = epoch, true
	var q simQueue
	seq := 0
	for _, o := range opts.Outages {
		q.push(simEvent{at: o.At, seq: seq, down: true, machine: int32(o.Machine)})
		seq++
	}
	var now time.Duration
	for {
		for _, a := range s.assign(now) {
			m := &plan.Machines[a.Machine]
			ev := simEvent{at: now + a.Transfer + dur[a.Job]/time.Duration(m.SpeedFactor), seq: seq, start: now,
				job: int32(a.Job), machine: int32(a.Machine), slot: int32(a.Slot), attempt: int32(a.Attempt)}
			if opts.Fail != nil && opts.Fail(a.Job) {
				ev.outcome = Failed
			}
			q.push(ev)
			seq++
		}
		if s.Finished() {
			break
		}
		if len(q) == 0 {
			at, ok := s.wake(now)
			if !ok {
				return tl, fmt.Errorf("%w at %v with %d running", ErrStuck, now, s.Running())
			}
			now = at
			continue
		}
		if w, ok := s.wake(now); ok && w < q[0].at {
			now = w
			continue
		}
		ev := q.pop()
		now = ev.at
		if ev.down {
			for _, a := range s.machineDown(int(ev.machine), now) {
				tl.add(plan, a.Job, a.Machine, a.Slot, a.Start.Sub(epoch), now, MachineLost)
			}
			continue
		}
		a := Assignment{Job: int(ev.job), Machine: int(ev.machine), Slot: int(ev.slot), Attempt: int(ev.attempt)}
		if s.current(a) {
			tl.add(plan, a.Job, a.Machine, a.Slot, ev.start, now, ev.outcome)
		}
		s.done(a, ev.outcome, "", now)
	}
	tl.LowerBound = plan.LowerBound(dur)
	return tl, s.Err()
}

// simEvent is a build ending (or a machine going down) at a time. It
// holds what Done needs of the assignment, not the Assignment itself
// (56 bytes instead of 104 for the event heap to move).
type simEvent struct {
	at, start                   time.Duration
	seq                         int
	job, machine, slot, attempt int32
	outcome                     Outcome
	down                        bool
}

// simQueue is a min-heap of events by time, then sequence number.
type simQueue []simEvent

func (q simQueue) less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}

func (q *simQueue) push(ev simEvent) {
	*q = append(*q, ev)
	h := *q
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *simQueue) pop() simEvent {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		c := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			c = r
		}
		if !h.less(c, i) {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	*q = h
	return top
}
