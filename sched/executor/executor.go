// Package executor runs sched's assignments on real builders: Local builds
// on a nix-daemon reached through a unix socket, Remote on a builder's
// nix-daemon reached over ssh, after copying the inputs it lacks. Router
// sends each assignment to the executor of its machine. nbuild never builds
// anything itself: every build is delegated to a nix-daemon. Display shows
// a run to a person: a status line on a terminal, and messages.
package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
)

// Router dispatches each assignment to the executor of its machine index.
type Router []sched.Executor

var _ sched.Executor = Router(nil)

// Start implements sched.Executor.
func (r Router) Start(ctx context.Context, a sched.Assignment, results chan<- sched.Result) {
	if a.Machine < 0 || a.Machine >= len(r) || r[a.Machine] == nil {
		results <- sched.Result{Assignment: a, Outcome: sched.MachineLost, Reason: fmt.Sprintf("no executor for machine %d", a.Machine)}
		return
	}
	r[a.Machine].Start(ctx, a, results)
}

// Close closes the executors that hold connections (a Remote's login
// and sessions). Call it once the run is over.
func (r Router) Close() error {
	var errs []error
	for _, e := range r {
		if c, ok := e.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// Job tells an executor what a scheduler job is.
type Job struct {
	Drv store.Path
	// Outputs are the output paths the build must leave valid (known for
	// input-addressed and fixed-output derivations).
	Outputs []store.Path
	// Keep means the user asked for the outputs: a remote build copies
	// their closure back to the local store (see Held for the others).
	Keep bool
}

// Events receives what builds report; every field is optional. Calls may
// come from several goroutines at once.
type Events struct {
	// Log receives each build log line of job.
	Log func(job int, line string)
	// Built is called after job was built on machine, before its result is
	// reported to the scheduler.
	Built func(job, machine int, res *store.BuildResult)
	// Lost is called when job could not be built on machine because the
	// machine or the link to it failed; the scheduler tries it elsewhere.
	Lost func(job, machine int, reason string)
	// Failed is called when job's build failed on machine (not when it
	// was cancelled); reason holds the error and the log's last lines.
	Failed func(job, machine int, reason string)
	// Refused is called when machine refused to build job for a reason
	// only its configuration can change (an untrusted user); the
	// scheduler stops using the machine.
	Refused func(job, machine int, reason string)
	// Unreachable is called when job could not start on machine because
	// logging in to it failed every attempt; the scheduler stops using
	// the machine (and fails the jobs no other machine can build).
	Unreachable func(job, machine int, reason string)
}

// report passes a lost machine's reason to Lost and returns res.
func (ev *Events) report(res sched.Result) sched.Result {
	if res.Outcome == sched.MachineLost && ev.Lost != nil {
		ev.Lost(res.Job, res.Machine, res.Reason)
	}
	if res.Outcome == sched.MachineRefused && ev.Refused != nil {
		ev.Refused(res.Job, res.Machine, res.Reason)
	}
	if res.Outcome == sched.MachineUnreachable && ev.Unreachable != nil {
		ev.Unreachable(res.Job, res.Machine, res.Reason)
	}
	if res.Outcome == sched.Failed && res.Reason != "cancelled" && ev.Failed != nil {
		ev.Failed(res.Job, res.Machine, res.Reason)
	}
	return res
}

// buildSettings are the daemon settings of a build connection. The plan
// already decided what is substituted (and fetched it first), so the
// daemon must not ask the substituters again for every build: offline,
// each such query waits for a connect timeout. builders = "" (allowed for
// untrusted clients too) keeps the daemon from handing the build to its
// own remote builders: nbuild already chose the machine.
//
// options are the user's --option settings, sent too.
func buildSettings(options map[string]string) daemon.Settings {
	o := map[string]string{}
	for k, v := range options {
		o[k] = v
	}
	o["builders"] = ""
	return daemon.Settings{QuietBuild: true, NoSubstitutes: true, Overrides: o}
}

// logTail keeps the last lines of a build log.
type logTail struct {
	mu    sync.Mutex
	lines []string
	max   int
}

func (t *logTail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == t.max {
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:t.max-1]
	}
	t.lines = append(t.lines, line)
}

func (t *logTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// buildLogger collects the build log lines of one daemon connection.
func buildLogger(job int, ev *Events, tail *logTail) daemon.Logger {
	return daemon.LogFuncs{
		OnResult: func(r daemon.Result) {
			if r.Type == daemon.ResBuildLogLine && len(r.Fields) > 0 {
				line := strings.TrimRight(r.Fields[0].String, "\n")
				tail.add(line)
				if ev.Log != nil {
					ev.Log(job, line)
				}
			}
		},
	}
}

// outcome classifies a build error: an error the daemon reported about
// the build is a build failure (not retried); anything else means the
// machine or the link to it failed, and the job is tried elsewhere.
func outcome(ctx context.Context, err error, tail *logTail) (sched.Outcome, string) {
	var de *daemon.Error
	var be *store.BuildError
	switch {
	case ctx.Err() != nil:
		return sched.Failed, "cancelled"
	case errors.As(err, &be), errors.As(err, &de):
		msg := err.Error()
		if t := tail.String(); t != "" && !containsLines(msg, t) {
			msg += "\nlast log lines:\n" + t
		}
		return sched.Failed, msg
	default:
		return sched.MachineLost, err.Error()
	}
}

// containsLines reports whether every line of t is in msg (the daemon's
// own error may already quote the log's last lines, prefixed by "> ").
func containsLines(msg, t string) bool {
	for _, l := range strings.Split(t, "\n") {
		if !strings.Contains(msg, l) {
			return false
		}
	}
	return true
}
