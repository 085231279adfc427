package executor

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/sched/plan"
)

// Display shows a run of Run to a person, as nbuild build does: on a
// terminal one status line, redrawn at most ten times a second, with the
// builds done of the total, those failed, the running ones per builder,
// the critical path left and an estimate of the time left, e.g.
//
//	[3/10 built; running: 2 local, 1 pi; critical path ~40s; ETA ~1m0s]
//
// and messages (Warn) on lines of their own above it. Elsewhere (a pipe,
// a file) it draws nothing and prints only the messages. Its methods fit
// RunOptions.Progress and RunOptions.Started and may be called from
// several goroutines; Clear removes the status line at the end.
type Display struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
	quiet    bool
	plan     *plan.Plan
	last     time.Time
	shown    bool
	on       sync.Map // job id -> machine index it runs on
}

// DisplayOptions tune a Display. The zero value prints messages only.
type DisplayOptions struct {
	// Terminal says that the writer is a terminal, which can take the
	// status line and its escape sequences.
	Terminal bool
	// Quiet draws no status line, even on a terminal.
	Quiet bool
}

// NewDisplay returns a Display of a run of p on w.
func NewDisplay(w io.Writer, p *plan.Plan, opts DisplayOptions) *Display {
	return &Display{w: w, terminal: opts.Terminal, quiet: opts.Quiet, plan: p}
}

// Live reports whether the status line is drawn (a terminal, not Quiet):
// a failure is then worth a message as it happens, before the run ends.
func (d *Display) Live() bool { return d.terminal && !d.quiet }

// Warn prints a message on its own line, above the status line.
func (d *Display) Warn(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.shown {
		fmt.Fprint(d.w, "\r\033[K")
		d.shown = false
	}
	fmt.Fprintf(d.w, format+"\n", args...)
}

// Started records which machine a job was handed to, for the running
// builds per builder (RunOptions.Started).
func (d *Display) Started(job, machine int) { d.on.Store(job, machine) }

// Update redraws the status line from the scheduler's state
// (RunOptions.Progress).
func (d *Display) Update(s *sched.Scheduler) {
	if !d.Live() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Since(d.last) < 100*time.Millisecond {
		return
	}
	d.last = time.Now()
	_, cpLeft := s.Progress()
	var built, failed int
	running := map[string]int{}
	var work time.Duration // expected build time of what is not built yet
	for id := range d.plan.JobNodes {
		switch s.State(id) {
		case sched.Running:
			name := "?"
			if m, ok := d.on.Load(id); ok {
				name = BuilderName(d.plan.Machines[m.(int)])
			}
			running[name]++
			work += d.plan.Sched.Jobs[id].Expected
		case sched.Done:
			built++
		case sched.Failing, sched.Skipped:
			failed++
		case sched.Waiting, sched.Ready:
			work += d.plan.Sched.Jobs[id].Expected
		}
	}
	slots := 0
	for _, m := range d.plan.Machines {
		slots += int(m.MaxJobs)
	}
	eta := cpLeft
	if slots > 0 {
		eta = max(eta, work/time.Duration(slots))
	}
	fmt.Fprintf(d.w, "\r\033[K%s", statusLine(built, failed, len(d.plan.JobNodes), running, cpLeft, eta))
	d.shown = true
}

// BuilderName is a builder as messages and the status line show it:
// "local", or its builders line's host without scheme and parameters
// ("ssh-ng://root@pi?compress=true" is "root@pi").
func BuilderName(m sched.Machine) string {
	if m.Local {
		return "local"
	}
	h := m.URI
	if _, rest, ok := strings.Cut(h, "://"); ok {
		h = rest
	}
	h, _, _ = strings.Cut(h, "?")
	return h
}

// statusLine renders the status line, e.g.
// "[3/10 built; running: 2 local, 1 pi; critical path ~40s; ETA ~1m0s]".
// The ETA is the larger of the critical path left and the expected work
// left spread over every build slot.
//
// failed counts failed jobs and those skipped because an input failed.
func statusLine(built, failed, total int, running map[string]int, cpLeft, eta time.Duration) string {
	names := make([]string, 0, len(running))
	for n := range running {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "[%d/%d built", built, total)
	if failed > 0 {
		fmt.Fprintf(&b, ", %d failed", failed)
	}
	if len(names) > 0 {
		b.WriteString("; running:")
		for i, n := range names {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, " %d %s", running[n], n)
		}
	}
	fmt.Fprintf(&b, "; critical path ~%s; ETA ~%s]", cpLeft.Round(time.Second), eta.Round(time.Second))
	return b.String()
}

// Clear removes the status line; call it when the run is over.
func (d *Display) Clear() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.shown {
		fmt.Fprint(d.w, "\r\033[K")
	}
}

// Events returns the Events that tell the person watching about builders
// and failures: a build lost with its builder and tried elsewhere, a
// builder that refused or could not be reached and is left out for the
// rest of the run, and, while the status line is drawn (Live), a failed
// build as it happens (in a pipe the run's final error says it). Built
// and Log are left for the caller.
func (d *Display) Events() Events {
	name := func(job int) string { return d.plan.Sched.Jobs[job].Name }
	builder := func(machine int) string { return BuilderName(d.plan.Machines[machine]) }
	return Events{
		Lost: func(job, machine int, reason string) {
			d.Warn("warning: %s: %s; trying elsewhere", name(job), reason)
		},
		Refused: func(job, machine int, reason string) {
			d.Warn("warning: %s; not using this builder for the rest of the run", reason)
		},
		Unreachable: func(job, machine int, reason string) {
			d.Warn("warning: %s: %s; not using this builder for the rest of the run", builder(machine), reason)
		},
		Failed: func(job, machine int, reason string) {
			if d.Live() {
				d.Warn("error: %s failed on %s: %s", name(job), builder(machine), reason)
			}
		},
	}
}
