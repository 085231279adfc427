package executor

import (
	"context"
	"fmt"
	"sync"

	"github.com/nbuild/nbuild/store"
)

// Held records which remote builder holds outputs that are not (yet) in
// the local store. A remote build's outputs stay on its builder unless the
// user asked for them (Job.Keep): a later build on the same builder uses
// them there, and a build anywhere else first has them fetched into the
// local store, then copied on from there (the scheduler's transfer model:
// builder → coordinating host → builder). A nil *Held means every output
// is copied back at once.
type Held struct {
	mu sync.Mutex
	at map[store.Path]holder
}

type holder struct {
	machine int
	remote  *Remote
	job     int // the job that built it
}

// LostError is returned by Fetch when a builder that was the only holder
// of some outputs cannot hand them over (it died, or lost them): the jobs
// that built them must run again (sched.InputsLost, Scheduler.Redo).
type LostError struct {
	Jobs []int
	Err  error
}

func (e *LostError) Error() string { return e.Err.Error() }
func (e *LostError) Unwrap() error { return e.Err }

// NewHeld returns an empty record.
func NewHeld() *Held { return &Held{at: map[store.Path]holder{}} }

func (h *Held) record(machine int, r *Remote, job int, paths []store.Path) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range paths {
		h.at[p] = holder{machine, r, job}
	}
}

// On reports whether machine holds p (and the local store may not).
func (h *Held) On(machine int, p store.Path) bool {
	if h == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	x, ok := h.at[p]
	return ok && x.machine == machine
}

// Fetch makes those of paths that a builder other than machine holds
// valid in the local store, copying each one's closure from its builder.
// machine -1 means the local machine.
func (h *Held) Fetch(ctx context.Context, machine int, paths []store.Path) error {
	if h == nil {
		return nil
	}
	by := map[*Remote][]store.Path{}
	var order []*Remote
	h.mu.Lock()
	for _, p := range paths {
		x, ok := h.at[p]
		if !ok || x.machine == machine {
			continue
		}
		if by[x.remote] == nil {
			order = append(order, x.remote)
		}
		by[x.remote] = append(by[x.remote], p)
	}
	h.mu.Unlock()
	for _, r := range order {
		if err := r.fetch(ctx, by[r]); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// Whatever the cause, these outputs are not to be had from
			// there: forget them and have their jobs built again.
			lost := &LostError{Err: fmt.Errorf("fetching outputs built on %s: %w", r.Machine.URI, err)}
			h.mu.Lock()
			seen := map[int]bool{}
			for _, p := range by[r] {
				if x, ok := h.at[p]; ok && x.remote == r {
					if !seen[x.job] {
						seen[x.job] = true
						lost.Jobs = append(lost.Jobs, x.job)
					}
					delete(h.at, p)
				}
			}
			h.mu.Unlock()
			return lost
		}
		// Local now: later consumers copy from here. The builder still
		// has them, but the local copy is the one to use.
		h.mu.Lock()
		for _, p := range by[r] {
			delete(h.at, p)
		}
		h.mu.Unlock()
	}
	return nil
}
