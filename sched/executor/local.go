package executor

import (
	"context"
	"fmt"
	"net"

	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
)

// Local builds jobs on a nix-daemon whose store holds the .drv files: the
// machine's own daemon. A build holds a connection of Pool while it runs,
// its log lines going to that build alone; see buildSettings for what
// the daemon is told.
type Local struct {
	// Pool is the connections to the daemon, shared with every executor
	// (see NewLocalPool); nil dials one connection per build to Socket.
	Pool *daemon.Pool
	// Socket is the daemon's socket when Pool is nil; "" means the
	// default.
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
	var c *daemon.Conn
	var err error
	if l.Pool != nil {
		c, err = l.Pool.Acquire(ctx)
		if err == nil {
			defer l.Pool.Release(c)
			c.SetLogger(opts.Logger)
		}
	} else if c, err = daemon.Dial(ctx, socket, opts); err == nil {
		defer c.Close()
	}
	if err != nil {
		if ctx.Err() != nil {
			return sched.Result{Assignment: a, Outcome: sched.Failed, Reason: "cancelled"}
		}
		return sched.Result{Assignment: a, Outcome: sched.MachineLost, Reason: fmt.Sprintf("connecting to the nix-daemon: %v", err)}
	}
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
const DefaultSocket = store.DaemonSocket

// LocalPoolOptions configure NewLocalPool. The zero value dials
// DefaultSocket and holds at most 2 connections.
type LocalPoolOptions struct {
	// Socket is the daemon's socket; "" means DefaultSocket.
	Socket string
	// Size bounds the connections open at once (PoolSize suggests one);
	// 0 means 2.
	Size int
	// Options are the user's --option settings, sent on each connection.
	Options map[string]string
	// DialContext, when set, makes each connection's stream (see
	// daemon.Dialer), e.g. to count them.
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)
}

// NewLocalPool returns the one pool of connections to the local daemon
// that the Local executor and every Remote's copies share, so that the
// daemon sees at most opts.Size connections however many builds run.
// Connecting retries a full listen backlog (daemon.Dialer). The caller
// closes it after the run.
func NewLocalPool(opts LocalPoolOptions) *daemon.Pool {
	if opts.Socket == "" {
		opts.Socket = DefaultSocket
	}
	d := &daemon.Dialer{
		Socket:      opts.Socket,
		Options:     daemon.Options{Settings: buildSettings(opts.Options)},
		DialContext: opts.DialContext,
	}
	return daemon.NewPool(max(opts.Size, 2), d.Dial)
}

// PoolSize is a size for NewLocalPool: a connection per local build slot
// (a build holds one while it runs), and two per remote builder (its
// input upload, which is one at a time per builder, and an output copy
// or fetch).
func PoolSize(machines []sched.Machine) int {
	n := 0
	for _, m := range machines {
		if m.Local {
			n += int(m.MaxJobs)
		} else {
			n += 2
		}
	}
	return max(n, 2)
}
