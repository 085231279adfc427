package sched

import (
	"context"
	"time"
)

// Executor builds jobs on machines; executors for the local daemon and for
// ssh builders live in sched's subpackages.
type Executor interface {
	// Start begins building a.Job on a.Machine and returns at once. It
	// must later send exactly one Result for a on results, also when ctx
	// is cancelled (Run keeps receiving until every started build has
	// reported).
	Start(ctx context.Context, a Assignment, results chan<- Result)
}

// Result is how an Executor reports a finished assignment.
type Result struct {
	Assignment
	Outcome Outcome
	// Reason describes a failure (for Failed: the error and a log tail).
	Reason string
	// Redo lists, for InputsLost, the jobs whose outputs were lost.
	Redo []int
}

// RunOptions configures Run.
type RunOptions struct {
	// Timeline, when set, receives an entry per finished assignment.
	Timeline *Timeline
	// Progress, when set, is called after every event.
	Progress func(s *Scheduler)
}

// Run drives the scheduler with real time until the run is finished or
// ctx is cancelled, starting builds with exec. After a failure without
// KeepGoing, or on cancellation, it cancels the running builds and waits
// for their results. It returns ctx's error or Err.
func (s *Scheduler) Run(ctx context.Context, exec Executor, opts RunOptions) error {
	ctx, cancelAll := context.WithCancel(ctx)
	defer cancelAll()
	results := make(chan Result, 1+s.totalSlots())
	type key struct{ job, attempt int }
	cancels := map[key]context.CancelFunc{}
	outstanding := 0
	cancelling := false
	epoch := time.Now()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if ctx.Err() == nil && !s.stopped {
			for _, a := range s.Assign(time.Now()) {
				bctx, cancel := context.WithCancel(ctx)
				cancels[key{a.Job, a.Attempt}] = cancel
				outstanding++
				exec.Start(bctx, a, results)
			}
		}
		if opts.Progress != nil {
			opts.Progress(s)
		}
		if outstanding == 0 && (s.Finished() || ctx.Err() != nil) {
			break
		}
		var wake <-chan time.Time
		if at, ok := s.Wake(time.Now()); ok && ctx.Err() == nil {
			if timer == nil {
				timer = time.NewTimer(time.Until(at))
			} else {
				timer.Reset(time.Until(at))
			}
			wake = timer.C
		}
		if outstanding == 0 && wake == nil {
			break // nothing can happen any more (Err says what is left)
		}
		done := ctx.Done()
		if ctx.Err() != nil {
			done = nil
		}
		select {
		case r := <-results:
			outstanding--
			k := key{r.Job, r.Attempt}
			if c := cancels[k]; c != nil {
				c()
				delete(cancels, k)
			}
			if s.current(r.Assignment) && opts.Timeline != nil {
				now := time.Now()
				opts.Timeline.add(s.plan, r.Job, r.Machine, r.Slot, r.Start.Sub(epoch), now.Sub(epoch), r.Outcome)
			}
			if cancelling && r.Outcome != Built {
				// A build we cancelled: neither failed nor lost.
				s.abandon(r.Assignment)
			} else {
				if r.Outcome == InputsLost && s.current(r.Assignment) {
					s.Redo(r.Redo)
				}
				s.Done(r.Assignment, r.Outcome, r.Reason, time.Now())
			}
			if s.stopped && !cancelling {
				cancelling = true
				for _, c := range cancels {
					c()
				}
			}
		case <-wake:
		case <-done:
			cancelling = true
			cancelAll()
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.Err()
}

func (s *Scheduler) totalSlots() int {
	n := 0
	for m := range s.machines {
		n += len(s.machines[m].slots)
	}
	return n
}

// NewTimeline returns an empty timeline for plan, for RunOptions.Timeline.
func NewTimeline(plan *Plan) *Timeline { return newTimeline(plan, PolicyCriticalPath) }
