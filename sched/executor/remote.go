package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/copy"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/ssh"
)

// Remote builds jobs on a builder's nix-daemon reached over ssh
// (`nix-daemon --stdio`, the ssh-ng protocol), as Nix 2.8's build hook
// does: copy the input closure the builder lacks, BuildDerivation with the
// whole input closure as input sources, copy the outputs back. The ssh
// user must be trusted by the builder's daemon (e.g. root), since an
// untrusted user may only build content-addressed derivations there.
//
// Connections: a Remote logs in once (an ssh.Master) and runs at most
// Sessions `nix-daemon --stdio` sessions over that login, reused from
// job to job. Its copies to and from the local store use Local, the pool
// every executor shares. A session is taken before a local connection,
// never the other way round, so the two bounds cannot deadlock.
//
// Faults: logging in is tried LoginAttempts times with a doubling
// backoff; then the builder is unreachable for the run (its jobs report
// sched.MachineUnreachable). A session lost after login (the builder or
// the link died mid-build) reports sched.MachineLost, and the scheduler
// tries the job elsewhere.
type Remote struct {
	Machine sched.Machine
	Jobs    []Job
	Events  Events
	// Local is the pool of connections to the local daemon, shared with
	// the other executors (see NewLocalPool); nil dials a connection per
	// copy to LocalSocket.
	Local *daemon.Pool
	// LocalSocket is the socket of the daemon whose store holds the .drv
	// files and inputs, when Local is nil; "" means DefaultSocket.
	LocalSocket string
	// Getenv looks up NIX_SSHOPTS; nil means os.Getenv.
	Getenv func(string) string
	// SSH adds options to every ssh command (tests: port, identity; a
	// Prompt shared by all Remotes keeps their logins' prompts apart).
	// The machine's SSHKey and PublicHostKey fill Identity and
	// PublicHostKey when those are empty.
	SSH ssh.Options
	// Options are nix.conf settings sent to the daemon (nix --option).
	Options map[string]string
	// TailLines is how many log lines a failure reports (default 20).
	TailLines int
	// Held, when set, keeps outputs on the builder unless Job.Keep; nil
	// copies every output back.
	Held *Held
	// Sessions bounds the daemon sessions open at once over the login;
	// 0 means the machine's MaxJobs plus one (for fetches), at most 10
	// (OpenSSH's default MaxSessions per connection).
	Sessions int
	// LoginAttempts is how often logging in is tried before the builder
	// is unreachable for the run, waiting LoginBackoff, then twice that,
	// and so on, between attempts. 0 means 3 attempts, 1 s.
	LoginAttempts int
	LoginBackoff  time.Duration

	upload sync.Mutex // held while copying inputs to the builder

	mu      sync.Mutex
	master  *ssh.Master
	pool    *daemon.Pool
	streams map[*daemon.Conn]*ssh.Conn
	closed  bool

	loginMu sync.Mutex // serialises logins
	down    error      // the login failed for good: *UnreachableError
}

var _ sched.Executor = (*Remote)(nil)

// UnreachableError says a builder could not be logged in to; it is down
// for the rest of the run.
type UnreachableError struct {
	Machine  string
	Attempts int
	Err      error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("builder %s is unreachable (%d login attempts): %v", e.Machine, e.Attempts, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Start implements sched.Executor.
func (r *Remote) Start(ctx context.Context, a sched.Assignment, results chan<- sched.Result) {
	go func() { results <- r.Events.report(r.build(ctx, a)) }()
}

// Close ends the builder's sessions and its login. Call it after the run.
func (r *Remote) Close() error {
	r.mu.Lock()
	pool, master := r.pool, r.master
	r.closed = true
	r.mu.Unlock()
	if pool != nil {
		pool.Close()
	}
	if master != nil {
		return master.Close()
	}
	return nil
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

// sessions returns the builder's session pool, made on first use.
func (r *Remote) sessions() (*daemon.Pool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ssh.ErrClosed
	}
	if r.pool != nil {
		return r.pool, nil
	}
	host, err := r.host()
	if err != nil {
		return nil, err
	}
	opts := r.SSH
	if opts.Getenv == nil {
		opts.Getenv = r.Getenv
	}
	if opts.Identity == "" {
		opts.Identity = r.Machine.SSHKey
	}
	if opts.PublicHostKey == "" {
		opts.PublicHostKey = r.Machine.PublicHostKey
	}
	if r.master, err = ssh.NewMaster(host, opts); err != nil {
		return nil, fmt.Errorf("builder %s: %w", r.Machine.URI, err)
	}
	n := r.Sessions
	if n <= 0 {
		n = min(int(r.Machine.MaxJobs)+1, 10)
	}
	r.streams = map[*daemon.Conn]*ssh.Conn{}
	r.pool = daemon.NewPool(n, r.dialSession)
	return r.pool, nil
}

// login starts the ssh master unless it runs, trying LoginAttempts times.
func (r *Remote) login(ctx context.Context) error {
	r.loginMu.Lock()
	defer r.loginMu.Unlock()
	if r.down != nil {
		return r.down
	}
	if r.master.Running() {
		return nil
	}
	attempts, backoff := r.LoginAttempts, r.LoginBackoff
	if attempts <= 0 {
		attempts = 3
	}
	if backoff <= 0 {
		backoff = time.Second
	}
	var err error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			t := time.NewTimer(backoff << (i - 1))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
		if err = r.master.Start(ctx); err == nil || ctx.Err() != nil {
			return err
		}
	}
	r.down = &UnreachableError{Machine: r.Machine.URI, Attempts: attempts, Err: err}
	return r.down
}

// dialSession opens a daemon session over the login (the pool's dial).
func (r *Remote) dialSession(ctx context.Context) (*daemon.Conn, error) {
	if err := r.login(ctx); err != nil {
		return nil, err
	}
	cmd := []string{"nix-daemon", "--stdio"}
	if st := uriParam(r.Machine.URI, "remote-store"); st != "" {
		// As Nix's ssh-ng store: the store the session opens, e.g.
		// "daemon" to go through the builder's nix-daemon.
		cmd = append(cmd, "--store", st)
	}
	sc, err := r.master.Dial(ctx, cmd)
	if err != nil {
		return nil, err
	}
	rc, err := daemon.NewConn(ctx, sc, daemon.Options{Settings: buildSettings(r.Options)})
	if err != nil {
		err = withStderr(err, sc)
		sc.Close()
		return nil, err
	}
	r.mu.Lock()
	r.streams[rc] = sc
	r.mu.Unlock()
	return rc, nil
}

// session takes a daemon session on the builder; log receives its
// messages until release.
func (r *Remote) session(ctx context.Context, log daemon.Logger) (*daemon.Conn, error) {
	p, err := r.sessions()
	if err != nil {
		return nil, err
	}
	c, err := p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	c.SetLogger(log)
	return c, nil
}

func (r *Remote) release(c *daemon.Conn) {
	if c.Err() != nil {
		r.mu.Lock()
		delete(r.streams, c)
		r.mu.Unlock()
	}
	r.pool.Release(c)
}

// stderr adds what the session's remote side printed to err.
func (r *Remote) stderr(err error, c *daemon.Conn) error {
	r.mu.Lock()
	sc := r.streams[c]
	r.mu.Unlock()
	if sc == nil {
		return err
	}
	return withStderr(err, sc)
}

// local takes a connection to the local daemon; done gives it back.
func (r *Remote) local(ctx context.Context) (c *daemon.Conn, done func(), err error) {
	if r.Local != nil {
		if c, err = r.Local.Acquire(ctx); err != nil {
			return nil, nil, fmt.Errorf("connecting to the local nix-daemon: %w", err)
		}
		return c, func() { r.Local.Release(c) }, nil
	}
	socket := r.LocalSocket
	if socket == "" {
		socket = DefaultSocket
	}
	if c, err = daemon.Dial(ctx, socket, daemon.Options{}); err != nil {
		return nil, nil, fmt.Errorf("connecting to the local nix-daemon: %w", err)
	}
	return c, func() { c.Close() }, nil
}

// uriParam returns the value of a query parameter of a machine URI.
func uriParam(uri, key string) string {
	_, q, ok := strings.Cut(uri, "?")
	if !ok {
		return ""
	}
	v, err := url.ParseQuery(q)
	if err != nil {
		return ""
	}
	return v.Get(key)
}

// fetch copies the closure of paths, valid on the builder, into the
// local store.
func (r *Remote) fetch(ctx context.Context, paths []store.Path) error {
	rc, err := r.session(ctx, nil)
	if err != nil {
		return err
	}
	defer r.release(rc)
	local, done, err := r.local(ctx)
	if err != nil {
		return err
	}
	defer done()
	all, err := copy.Closure(ctx, rc, paths)
	if err == nil {
		err = copyPaths(ctx, rc, local, all, false)
	}
	if err != nil {
		return r.stderr(err, rc)
	}
	return nil
}

func (r *Remote) build(ctx context.Context, a sched.Assignment) sched.Result {
	lost := func(format string, args ...any) sched.Result {
		return sched.Result{Assignment: a, Outcome: sched.MachineLost, Reason: fmt.Sprintf("builder %s: ", r.Machine.URI) + fmt.Sprintf(format, args...)}
	}
	failed := func(format string, args ...any) sched.Result {
		return sched.Result{Assignment: a, Outcome: sched.Failed, Reason: fmt.Sprintf(format, args...)}
	}
	refused := func(err error) sched.Result {
		return sched.Result{Assignment: a, Outcome: sched.MachineRefused, Reason: err.Error()}
	}
	job := r.Jobs[a.Job]
	if _, err := r.host(); err != nil {
		return lost("%v", err)
	}
	d, err := readDerivation(job.Drv)
	if err != nil {
		return failed("%v", err)
	}
	direct, err := directInputs(d)
	if err != nil {
		return failed("inputs of %s: %v", job.Drv, err)
	}
	// Inputs this builder holds stay there; the others must be local
	// (fetched from the builder that made them) to be copied here.
	var here, fromLocal []store.Path
	for _, p := range direct {
		if r.Held.On(a.Machine, p) {
			here = append(here, p)
		} else {
			fromLocal = append(fromLocal, p)
		}
	}
	if err := r.Held.Fetch(ctx, a.Machine, fromLocal); err != nil {
		return inputsResult(a, job.Drv, err)
	}

	tail := &logTail{max: max(r.TailLines, 20)}
	rc, err := r.session(ctx, buildLogger(a.Job, &r.Events, tail))
	if err != nil {
		var ue *UnreachableError
		switch {
		case ctx.Err() != nil:
			return failed("cancelled")
		case errors.As(err, &ue):
			return sched.Result{Assignment: a, Outcome: sched.MachineUnreachable, Reason: err.Error()}
		}
		return lost("%v", err)
	}
	defer r.release(rc)
	if err := r.checkTrust(rc); err != nil {
		return refused(err)
	}
	// One input upload per builder at a time, as Nix's hook; the local
	// connection is taken inside the lock so waiting uploads hold none.
	r.upload.Lock()
	inputs, stage, err := r.upload1(ctx, rc, fromLocal)
	r.upload.Unlock()
	if err != nil {
		if e := r.untrusted(err); e != nil {
			return refused(e)
		}
		if stage != "copying inputs" {
			return failed("%s of %s: %v", stage, job.Drv, err)
		}
		return lost("copying inputs: %v", r.stderr(err, rc))
	}
	inputPaths := pathsOf(inputs)
	if len(here) > 0 {
		more, err := copy.Closure(ctx, rc, here)
		if err != nil {
			return lost("input closure of %s: %v", job.Drv, r.stderr(err, rc))
		}
		inputPaths = mergePaths(inputPaths, pathsOf(more))
	}
	basic := *d
	basic.InputDrvs = nil
	basic.InputSrcs = make([]string, len(inputPaths))
	for i, p := range inputPaths {
		basic.InputSrcs[i] = p.String()
	}
	res, err := rc.BuildDerivation(ctx, job.Drv, &basic, store.BuildNormal)
	if err == nil {
		err = res.Err(job.Drv.String())
	}
	if err != nil {
		if e := r.untrusted(err); e != nil {
			return refused(e)
		}
		if !isBuildError(err) {
			return lost("%v", r.stderr(err, rc))
		}
		o, why := outcome(ctx, err, tail)
		return sched.Result{Assignment: a, Outcome: o, Reason: fmt.Sprintf("build of %s on %s failed: %s", job.Drv, r.Machine.URI, why)}
	}
	if job.Keep || r.Held == nil {
		// The user asked for these outputs: their closure comes back.
		if err := r.copyBack(ctx, rc, job.Outputs); err != nil {
			return lost("copying outputs back: %v", r.stderr(err, rc))
		}
	} else {
		r.Held.record(a.Machine, r, a.Job, job.Outputs)
	}
	if r.Events.Built != nil {
		r.Events.Built(a.Job, a.Machine, res)
	}
	return sched.Result{Assignment: a, Outcome: sched.Built}
}

// upload1 copies the closure of paths from the local store to the
// builder. stage names the step that failed.
func (r *Remote) upload1(ctx context.Context, rc *daemon.Conn, paths []store.Path) (inputs []*store.PathInfo, stage string, err error) {
	local, done, err := r.local(ctx)
	if err != nil {
		return nil, "inputs", err
	}
	defer done()
	if inputs, err = copy.Closure(ctx, local, paths); err != nil {
		return nil, "input closure", err
	}
	if err = copyPaths(ctx, local, rc, inputs, true); err != nil {
		return nil, "copying inputs", err
	}
	return inputs, "", nil
}

// copyBack copies the closure of outputs from the builder to the local
// store.
func (r *Remote) copyBack(ctx context.Context, rc *daemon.Conn, outputs []store.Path) error {
	all, err := copy.Closure(ctx, rc, outputs)
	if err != nil {
		return err
	}
	local, done, err := r.local(ctx)
	if err != nil {
		return err
	}
	defer done()
	return copyPaths(ctx, rc, local, all, false)
}

// mergePaths appends those of b not in a.
func mergePaths(a, b []store.Path) []store.Path {
	seen := make(map[store.Path]bool, len(a))
	for _, p := range a {
		seen[p] = true
	}
	for _, p := range b {
		if !seen[p] {
			seen[p] = true
			a = append(a, p)
		}
	}
	return a
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
	AddMultipleToStore(ctx context.Context, infos []*store.PathInfo, writeNar daemon.NarWriterFunc, flags daemon.AddFlags) error
	AddToStoreNarFlags(ctx context.Context, info *store.PathInfo, nar io.Reader, flags daemon.AddFlags) error
}

// directInputs are a derivation's input sources and the used outputs of
// its input derivations (2.8 build-remote's inputPaths, before closing
// them under references).
func directInputs(d *drv.Derivation) ([]store.Path, error) {
	var start []store.Path
	for _, src := range d.InputSrcs {
		p, err := store.ParsePath(src)
		if err != nil {
			return nil, err
		}
		start = append(start, p)
	}
	for _, in := range d.InputDrvs {
		id, err := readDerivation(in.Path)
		if err != nil {
			return nil, err
		}
		for _, o := range id.Outputs {
			for _, want := range in.Outputs {
				if o.Name == want && !o.Path.IsZero() {
					start = append(start, o.Path)
				}
			}
		}
	}
	return start, nil
}

func pathsOf(infos []*store.PathInfo) []store.Path {
	out := make([]store.Path, len(infos))
	for i, info := range infos {
		out[i] = info.Path
	}
	return out
}

// copyPaths copies those of infos (in dependency order) that dst lacks
// from src; dst verifies each NAR against its hash and size before
// registering it. Like Nix's build hook it skips signature checks
// (NoCheckSigs): a daemon honours that only for a trusted client, and an
// untrusted one gets the daemon's "lacks a valid signature" error.
//
// With batch, the missing paths go in one AddMultipleToStore, with no
// reply per path. Nix 2.8-2.17 lose their place in that stream when a path
// in it became valid after the query (NixOS/nix#6253), so batch is only
// for a destination no one else writes to meanwhile (the caller holds the
// builder's upload lock); otherwise each path is its own AddToStoreNar,
// which the daemon always drains.
func copyPaths(ctx context.Context, src, dst pathInfoStore, infos []*store.PathInfo, batch bool) error {
	missing, err := copy.Missing(ctx, dst, infos, false)
	if err != nil || len(missing) == 0 {
		return err
	}
	flags := daemon.AddFlags{NoCheckSigs: true, KnownMissing: true}
	if batch {
		return dst.AddMultipleToStore(ctx, missing, func(info *store.PathInfo, w io.Writer) error {
			return src.NarFromPath(ctx, info.Path, w)
		}, flags)
	}
	// One path at a time: the source is a single connection.
	return copy.Copy(ctx, src, flaggedAdder{dst, flags}, missing, copy.Options{Jobs: 1})
}

// flaggedAdder adds paths through a daemon connection with fixed flags.
type flaggedAdder struct {
	c     pathInfoStore
	flags daemon.AddFlags
}

func (a flaggedAdder) AddToStoreNar(ctx context.Context, info *store.PathInfo, r io.Reader) error {
	return a.c.AddToStoreNarFlags(ctx, info, r, a.flags)
}

// checkTrust refuses a builder whose daemon says (protocol 1.35 and
// later) that the ssh user is not trusted: copying inputs without
// signatures, and building input-addressed derivations, need trust.
func (r *Remote) checkTrust(c *daemon.Conn) error {
	if c.Trust() == daemon.NotTrusted {
		return r.trustError()
	}
	return nil
}

// untrusted recognises what a daemon that does not report trust (Nix
// 2.8, protocol 1.34) says to an untrusted client: a copy of an
// input-addressed path sent without signatures "lacks a valid
// signature"; with only content-addressed inputs the copy passes and
// BuildDerivation says the client is "not privileged to build
// input-addressed derivations".
func (r *Remote) untrusted(err error) error {
	var de *daemon.Error
	if !errors.As(err, &de) {
		return nil
	}
	switch msg := err.Error(); {
	case strings.Contains(msg, "lacks a valid signature"):
		return fmt.Errorf("%w, or sign the paths it is sent (%v)", r.trustError(), err)
	case strings.Contains(msg, "not privileged to build input-addressed"):
		return fmt.Errorf("%w (%v)", r.trustError(), err)
	}
	return nil
}

func (r *Remote) trustError() error {
	host, _ := r.host()
	user, _, ok := strings.Cut(host, "@")
	if !ok {
		user = "the ssh user"
	}
	return fmt.Errorf("builder %s: user %s is not a trusted user of its nix-daemon (add it to trusted-users in the builder's nix.conf)", r.Machine.URI, user)
}

// inputsResult reports a failure to gather a job's inputs: InputsLost with
// the jobs to build again when a builder holding them is gone, else a
// failure.
func inputsResult(a sched.Assignment, drvPath store.Path, err error) sched.Result {
	var lost *LostError
	if errors.As(err, &lost) && len(lost.Jobs) > 0 {
		return sched.Result{Assignment: a, Outcome: sched.InputsLost, Redo: lost.Jobs,
			Reason: fmt.Sprintf("inputs of %s: %v; building them again", drvPath, err)}
	}
	return sched.Result{Assignment: a, Outcome: sched.Failed, Reason: fmt.Sprintf("inputs of %s: %v", drvPath, err)}
}
