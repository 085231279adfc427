package executor

import (
	"context"
	"fmt"

	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
)

// Local builds jobs on a nix-daemon whose store holds the .drv files: the
// machine's own daemon. Each build has its own connection, so its log
// lines are its own; see buildSettings for what the daemon is told.
type Local struct {
	// Socket is the daemon's socket; "" means the default.
	Socket string
	// Jobs describes the scheduler's jobs, by id.
	Jobs []Job
	// Events receives log lines and results.
	Events Events
	// Options are nix.conf settings sent to the daemon (nix --option).
	Options map[string]string
	// TailLines is how many log lines a failure reports (default 20).
	TailLines int
	// Held says which inputs remote builders still hold; they are
	// fetched before the build.
	Held *Held
}

var _ sched.Executor = (*Local)(nil)

// Start implements sched.Executor.
func (l *Local) Start(ctx context.Context, a sched.Assignment, results chan<- sched.Result) {
	go func() { results <- l.Events.report(l.build(ctx, a)) }()
}

func (l *Local) build(ctx context.Context, a sched.Assignment) sched.Result {
	job := l.Jobs[a.Job]
	tail := &logTail{max: max(l.TailLines, 20)}
	socket := l.Socket
	if socket == "" {
		socket = DefaultSocket
	}
	opts := daemon.Options{
		Logger:   buildLogger(a.Job, &l.Events, tail),
		Settings: buildSettings(l.Options),
	}
	if l.Held != nil {
		d, err := readDerivation(job.Drv)
		if err == nil {
			var in []store.Path
			if in, err = directInputs(d); err == nil {
				err = l.Held.Fetch(ctx, a.Machine, in)
			}
		}
		if err != nil {
			return inputsResult(a, job.Drv, err)
		}
	}
	c, err := daemon.Dial(ctx, socket, opts)
	if err != nil {
		return sched.Result{Assignment: a, Outcome: sched.MachineLost, Reason: fmt.Sprintf("connecting to the nix-daemon: %v", err)}
	}
	defer c.Close()
	res, err := c.BuildPathsWithResults(ctx, []store.DerivedPath{store.BuiltPath(job.Drv)}, store.BuildNormal)
	if err == nil && len(res) == 1 {
		err = res[0].Err(job.Drv.String())
	} else if err == nil {
		err = fmt.Errorf("the daemon returned %d results for one build", len(res))
	}
	if err != nil {
		o, why := outcome(ctx, err, tail)
		return sched.Result{Assignment: a, Outcome: o, Reason: why}
	}
	if l.Events.Built != nil {
		l.Events.Built(a.Job, a.Machine, res[0])
	}
	return sched.Result{Assignment: a, Outcome: sched.Built}
}

// DefaultSocket is where the machine's nix-daemon listens.
const DefaultSocket = "/nix/var/nix/daemon-socket/socket"
