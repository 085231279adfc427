package executor

import (
	"context"
	"fmt"
	"sync"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/sched/plan"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/ssh"
)

// RunOptions configure Run. The zero value builds through the machine's
// daemon at DefaultSocket, stops at the first failure, and reports
// nothing.
type RunOptions struct {
	// Socket is the local nix-daemon's socket; "" means DefaultSocket.
	Socket string
	// Options are the settings sent to every daemon (as nix --option).
	Options map[string]string
	// KeepGoing goes on with what does not depend on a failed build.
	KeepGoing bool
	// Events receives log lines and results; job ids are those of
	// p.Sched (p.JobNodes maps them to graph nodes).
	Events Events
	// Started, when set, is called as a job is handed to a machine.
	Started func(job, machine int)
	// Getenv looks up NIX_SSHOPTS for the remote builders; nil means
	// os.Getenv. SSH adds options to every ssh command.
	Getenv func(string) string
	SSH    ssh.Options
	// Timeline, when set, records what ran where and when.
	Timeline *sched.Timeline
	// Progress, when set, is called after every scheduler event.
	Progress func(*sched.Scheduler)
}

// Run builds the derivations p must build: first the local daemon
// substitutes what p takes from substituters, then the scheduler hands
// each derivation to its machine's executor, longest critical path first.
// The local daemon is reached through one bounded pool that every
// executor shares (NewLocalPool); each remote builder through one ssh
// login. An error wrapping sched.ErrBuildFailed means builds failed (its
// text names them); others mean the run could not go on.
func Run(ctx context.Context, p *plan.Plan, opts RunOptions) error {
	pool := NewLocalPool(LocalPoolOptions{Socket: opts.Socket, Size: PoolSize(p.Machines), Options: opts.Options})
	defer pool.Close()
	if err := substitute(ctx, p, opts.Options, opts.Socket); err != nil {
		return err
	}
	if p.Sched == nil {
		return nil
	}
	jobs := make([]Job, len(p.JobNodes))
	isRoot := map[graph.NodeID]bool{}
	for _, r := range p.Roots {
		isRoot[r] = true
	}
	for i, id := range p.JobNodes {
		node := p.Graph.Node(id)
		jobs[i].Keep = isRoot[id]
		jobs[i].Drv = node.Path
		for _, out := range node.Outputs {
			if !out.Path.IsZero() {
				jobs[i].Outputs = append(jobs[i].Outputs, out.Path)
			}
		}
	}
	held := NewHeld()
	sshOpts := opts.SSH
	if sshOpts.Prompt == nil {
		sshOpts.Prompt = new(sync.Mutex) // one login prompt at a time
	}
	route := make(Router, len(p.Machines))
	for m := range p.Machines {
		if p.Machines[m].Local {
			route[m] = &Local{Pool: pool, Jobs: jobs, Events: opts.Events, Options: opts.Options, Held: held}
			continue
		}
		route[m] = &Remote{Machine: p.Machines[m], Local: pool, Jobs: jobs, Events: opts.Events,
			Getenv: opts.Getenv, SSH: sshOpts, Options: opts.Options, Held: held}
	}
	defer route.Close()
	s := sched.NewScheduler(p.Sched, sched.Options{KeepGoing: opts.KeepGoing})
	start := sched.Executor(route)
	if opts.Started != nil {
		start = startFunc(func(ctx context.Context, a sched.Assignment, results chan<- sched.Result) {
			opts.Started(a.Job, a.Machine)
			route.Start(ctx, a, results)
		})
	}
	return s.Run(ctx, start, sched.RunOptions{Timeline: opts.Timeline, Progress: opts.Progress})
}

// startFunc adapts a function to sched.Executor.
type startFunc func(ctx context.Context, a sched.Assignment, results chan<- sched.Result)

func (f startFunc) Start(ctx context.Context, a sched.Assignment, results chan<- sched.Result) {
	f(ctx, a, results)
}

// substitute makes the local daemon fetch the outputs p takes from
// substituters, before anything that needs them is built. It uses a
// connection of its own: the pool's connections have substitutes off.
func substitute(ctx context.Context, p *plan.Plan, options map[string]string, socket string) error {
	var want []store.DerivedPath
	for id := range p.Graph.Len() {
		if p.State(graph.NodeID(id)) != plan.Substitutable {
			continue
		}
		for _, o := range p.Graph.Node(graph.NodeID(id)).Outputs {
			want = append(want, store.OpaquePath(o.Path))
		}
	}
	if len(want) == 0 {
		return nil
	}
	if socket == "" {
		socket = DefaultSocket
	}
	c, err := daemon.Dial(ctx, socket, daemon.Options{Settings: daemon.Settings{Overrides: options}})
	if err != nil {
		return fmt.Errorf("connecting to the nix-daemon to substitute: %w", err)
	}
	defer c.Close()
	if err := c.BuildPaths(ctx, want, store.BuildNormal); err != nil {
		return fmt.Errorf("substituting %d paths: %w", len(want), err)
	}
	return nil
}
