package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/ssh"
)

// Remote builds jobs on a builder's nix-daemon reached over ssh
// (`nix-daemon --stdio`, the ssh-ng protocol), as Nix 2.8's build hook
// does: copy the input closure the builder lacks, BuildDerivation with the
// whole input closure as input sources, copy the outputs back. The ssh
// user must be trusted by the builder's daemon (e.g. root), since an
// untrusted user may only build content-addressed derivations there.
type Remote struct {
	Machine sched.Machine
	Jobs    []Job
	Events  Events
	// LocalSocket is the socket of the daemon whose store holds the .drv
	// files and inputs; "" means DefaultSocket.
	LocalSocket string
	// Getenv looks up NIX_SSHOPTS; nil means os.Getenv.
	Getenv func(string) string
	// SSH adds options to every ssh command (tests: port, identity).
	SSH ssh.Options
	// Options are nix.conf settings sent to the daemon (nix --option).
	Options map[string]string
	// TailLines is how many log lines a failure reports (default 20).
	TailLines int
}

var _ sched.Executor = (*Remote)(nil)

// Start implements sched.Executor.
func (r *Remote) Start(ctx context.Context, a sched.Assignment, results chan<- sched.Result) {
	go func() { results <- r.Events.report(r.build(ctx, a)) }()
}

// host returns "[user@]host" of an ssh-ng:// or ssh:// machine URI.
func (r *Remote) host() (string, error) {
	u := r.Machine.URI
	for _, scheme := range []string{"ssh-ng://", "ssh://"} {
		if h, ok := strings.CutPrefix(u, scheme); ok {
			h, _, _ = strings.Cut(h, "?")
			return h, nil
		}
	}
	return "", fmt.Errorf("builder %s: only ssh-ng:// and ssh:// builders are supported", u)
}

func (r *Remote) build(ctx context.Context, a sched.Assignment) sched.Result {
	lost := func(format string, args ...any) sched.Result {
		return sched.Result{Assignment: a, Outcome: sched.MachineLost, Reason: fmt.Sprintf("builder %s: ", r.Machine.URI) + fmt.Sprintf(format, args...)}
	}
	job := r.Jobs[a.Job]
	host, err := r.host()
	if err != nil {
		return lost("%v", err)
	}
	socket := r.LocalSocket
	if socket == "" {
		socket = DefaultSocket
	}
	local, err := daemon.Dial(ctx, socket, daemon.Options{})
	if err != nil {
		return sched.Result{Assignment: a, Outcome: sched.Failed, Reason: fmt.Sprintf("connecting to the local nix-daemon: %v", err)}
	}
	defer local.Close()
	d, err := readDerivation(job.Drv)
	if err != nil {
		return sched.Result{Assignment: a, Outcome: sched.Failed, Reason: err.Error()}
	}
	inputs, err := inputClosure(ctx, local, d)
	if err != nil {
		return sched.Result{Assignment: a, Outcome: sched.Failed, Reason: fmt.Sprintf("input closure of %s: %v", job.Drv, err)}
	}

	opts := r.SSH
	if opts.Getenv == nil {
		opts.Getenv = r.Getenv
	}
	if r.Machine.SSHKey != "" && opts.Identity == "" {
		opts.Identity = r.Machine.SSHKey
	}
	sc, err := ssh.Dial(ctx, host, []string{"nix-daemon", "--stdio"}, opts)
	if err != nil {
		return lost("%v", err)
	}
	defer sc.Close()
	tail := &logTail{max: max(r.TailLines, 20)}
	rc, err := daemon.NewConn(ctx, sc, daemon.Options{
		Logger:   buildLogger(a.Job, &r.Events, tail),
		Settings: buildSettings(r.Options),
	})
	if err != nil {
		return lost("%v", withStderr(err, sc))
	}
	defer rc.Close()

	if err := copyPaths(ctx, local, rc, inputs); err != nil {
		return lost("copying inputs: %v", withStderr(err, sc))
	}
	basic := *d
	basic.InputDrvs = nil
	basic.InputSrcs = make([]string, len(inputs))
	for i, p := range inputs {
		basic.InputSrcs[i] = p.String()
	}
	res, err := rc.BuildDerivation(ctx, job.Drv, &basic, store.BuildNormal)
	if err == nil {
		err = res.Err(job.Drv.String())
	}
	if err != nil {
		if !isBuildError(err) {
			return lost("%v", withStderr(err, sc))
		}
		o, why := outcome(ctx, err, tail)
		return sched.Result{Assignment: a, Outcome: o, Reason: fmt.Sprintf("build of %s on %s failed: %s", job.Drv, r.Machine.URI, why)}
	}
	// Outputs come back to the local store: the user asked for them, or a
	// build elsewhere needs them.
	if err := copyPaths(ctx, rc, local, job.Outputs); err != nil {
		return lost("copying outputs back: %v", withStderr(err, sc))
	}
	if r.Events.Built != nil {
		r.Events.Built(a.Job, a.Machine, res)
	}
	return sched.Result{Assignment: a, Outcome: sched.Built}
}

func isBuildError(err error) bool {
	var be *store.BuildError
	var de *daemon.Error
	return errors.As(err, &be) || errors.As(err, &de)
}

// withStderr adds what the remote side printed to an error that ended the
// session (the ssh or daemon message that says why).
func withStderr(err error, sc *ssh.Conn) error {
	if t := strings.TrimSpace(sc.StderrTail()); t != "" && !strings.Contains(err.Error(), t) {
		return fmt.Errorf("%w (remote said: %s)", err, t)
	}
	return err
}

func readDerivation(p store.Path) (*drv.Derivation, error) {
	data, err := os.ReadFile(p.String())
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	return drv.Parse(data)
}

// pathInfoStore is what inputClosure and copyPaths need of a store.
type pathInfoStore interface {
	store.ValidPathQuerier
	store.PathInfoQuerier
	store.NarReader
	AddToStoreNarFlags(ctx context.Context, info *store.PathInfo, nar io.Reader, flags daemon.AddFlags) error
}

// inputClosure is what a build needs on the builder: the closure of the
// input sources and of the used outputs of the input derivations (2.8
// build-remote's inputPaths), dependencies first.
func inputClosure(ctx context.Context, s store.PathInfoQuerier, d *drv.Derivation) ([]store.Path, error) {
	var start []store.Path
	for _, src := range d.InputSrcs {
		p, err := store.ParsePath(src)
		if err != nil {
			return nil, err
		}
		start = append(start, p)
	}
	for _, in := range d.InputDrvs {
		dp, err := store.ParsePath(in.Path)
		if err != nil {
			return nil, err
		}
		id, err := readDerivation(dp)
		if err != nil {
			return nil, err
		}
		for _, o := range id.Outputs {
			for _, want := range in.Outputs {
				if o.Name == want && o.Path != "" {
					p, err := store.ParsePath(o.Path)
					if err != nil {
						return nil, err
					}
					start = append(start, p)
				}
			}
		}
	}
	return closure(ctx, s, start)
}

// closure returns the closure of start under references, dependencies
// first (a valid order to register paths in).
func closure(ctx context.Context, s store.PathInfoQuerier, start []store.Path) ([]store.Path, error) {
	infos := map[store.Path]*store.PathInfo{}
	var order []store.Path
	var visit func(p store.Path) error
	onStack := map[store.Path]bool{}
	visit = func(p store.Path) error {
		if _, ok := infos[p]; ok || onStack[p] {
			return nil
		}
		onStack[p] = true
		info, err := s.QueryPathInfo(ctx, p)
		if err != nil {
			return err
		}
		for _, ref := range info.References {
			if ref != p {
				if err := visit(ref); err != nil {
					return err
				}
			}
		}
		infos[p] = info
		order = append(order, p)
		return nil
	}
	for _, p := range start {
		if err := visit(p); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// copyPaths copies those of paths (in dependency order) that dst lacks
// from src, one NAR at a time; dst verifies each NAR against its hash and
// size before registering it. Like Nix's build hook it skips signature
// checks (NoCheckSigs): a daemon honours that only for a trusted client,
// and an untrusted one gets the daemon's "lacks a valid signature" error.
func copyPaths(ctx context.Context, src, dst pathInfoStore, paths []store.Path) error {
	if len(paths) == 0 {
		return nil
	}
	valid, err := dst.QueryValidPaths(ctx, paths, false)
	if err != nil {
		return err
	}
	have := map[store.Path]bool{}
	for _, p := range valid {
		have[p] = true
	}
	for _, p := range paths {
		if have[p] {
			continue
		}
		info, err := src.QueryPathInfo(ctx, p)
		if err != nil {
			return err
		}
		pr, pw := io.Pipe()
		errc := make(chan error, 1)
		go func() {
			err := src.NarFromPath(ctx, p, pw)
			pw.CloseWithError(err)
			errc <- err
		}()
		err = dst.AddToStoreNarFlags(ctx, info, pr, daemon.AddFlags{NoCheckSigs: true})
		pr.CloseWithError(io.ErrClosedPipe)
		if serr := <-errc; err == nil && serr != nil {
			err = serr
		}
		if err != nil {
			return fmt.Errorf("copying %s: %w", p, err)
		}
	}
	return nil
}
