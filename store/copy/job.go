package copy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/binarycache"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/ssh"
)

// Job is one copy of closures between the local store and another, as
// nix-copy-closure and `nix copy` do it: to or from an ssh host, or to or
// from a file:// binary cache.
type Job struct {
	// Local is a connection to the local nix-daemon, for closure and
	// validity queries; LocalSocket is its socket, for the connections
	// that add paths.
	Local       *daemon.Conn
	LocalSocket string
	// Remote is "[USER@]HOST" or "file:///DIR[?compression=…&secret-key=…]".
	Remote string
	// From copies from Remote into the local store; otherwise to Remote.
	From  bool
	Roots []store.Path
	// IncludeOutputs adds the valid outputs of the closure's derivations
	// (nix-copy-closure --include-outputs).
	IncludeOutputs bool
	// UseSubstitutes lets the receiving store substitute first (-s).
	UseSubstitutes bool
	// NoCheckSigs imports from a file:// cache without trusted signatures.
	NoCheckSigs bool
	// Host configures the transport, compression, parallelism and the
	// Progress, Missing and Sending callbacks (which file:// copies call
	// too).
	Host HostOptions
}

// Run copies. It picks the way: ToHost (one compressed session), FromHost
// (the remote's infos in one reply, NARs back to back) falling back to the
// worker protocol over ssh, or a binary cache. Only complete, hash-checked
// paths become valid; a rerun sends the rest.
func (j *Job) Run(ctx context.Context) (*HostResult, error) {
	cache := strings.HasPrefix(j.Remote, "file://")
	switch {
	case cache && j.From:
		return j.fromCache(ctx)
	case cache:
		return j.toCache(ctx)
	case strings.Contains(j.Remote, "://"):
		return nil, fmt.Errorf("copy: unsupported store URL '%s' (want [USER@]HOST or file:///DIR)", j.Remote)
	case j.From && !j.IncludeOutputs && len(j.Roots) > 0:
		res, err := j.fromHostDump(ctx)
		if !errors.Is(err, ErrNoPathInfo) {
			return res, err
		}
		// No `nix path-info --json` there: the worker protocol, uncompressed.
		return j.fromHost(ctx)
	case j.From:
		return j.fromHost(ctx)
	}
	closure, err := j.localClosure(ctx)
	if err != nil {
		return nil, err
	}
	return ToHost(ctx, j.Remote, closure, j.Host)
}

// localClosure is the closure of the roots in the local store, with the
// valid outputs of its derivations when IncludeOutputs is set.
func (j *Job) localClosure(ctx context.Context) ([]*store.PathInfo, error) {
	closure, err := Closure(ctx, j.Local, j.Roots)
	if err != nil || !j.IncludeOutputs {
		return closure, err
	}
	outs, err := drvOutputs(closure)
	if err != nil {
		return nil, err
	}
	valid, err := j.Local.QueryValidPaths(ctx, outs, false)
	if err != nil || len(valid) == 0 {
		return closure, err
	}
	return Closure(ctx, j.Local, append(j.Roots, valid...))
}

// drvOutputs lists the output paths of the derivations among infos, read
// from their .drv files.
func drvOutputs(infos []*store.PathInfo) ([]store.Path, error) {
	var outs []store.Path
	for _, info := range infos {
		if !info.Path.IsDerivation() {
			continue
		}
		data, err := os.ReadFile(info.Path.String())
		if err != nil {
			return nil, err
		}
		d, err := drv.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", info.Path, err)
		}
		for _, o := range d.Outputs {
			if o.Path.IsZero() {
				continue // floating CA: not known before it is built
			}
			outs = append(outs, o.Path)
		}
	}
	return outs, nil
}

// toCache writes the closure into a file:// binary cache, several NARs at
// once (each compressed in parallel chunks).
func (j *Job) toCache(ctx context.Context) (*HostResult, error) {
	dir, opts, err := binarycache.ParseURL(j.Remote)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cache, err := binarycache.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	closure, err := j.localClosure(ctx)
	if err != nil {
		return nil, err
	}
	missing, err := Missing(ctx, cache, closure, false)
	if err != nil {
		return nil, err
	}
	return j.copyPaths(ctx, FileSystem{}, cache, closure, missing, j.Host.Jobs)
}

// fromCache imports the closure of the roots from a file:// cache into the
// local store. The cache checks each NAR's size and hash as it streams, and
// the daemon checks it again and, unless NoCheckSigs, its signatures.
func (j *Job) fromCache(ctx context.Context) (*HostResult, error) {
	dir, opts, err := binarycache.ParseURL(j.Remote)
	if err != nil {
		return nil, err
	}
	cache, err := binarycache.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	closure, err := Closure(ctx, cache, j.Roots)
	if err != nil {
		return nil, err
	}
	missing, err := Missing(ctx, j.Local, closure, j.UseSubstitutes)
	if err != nil {
		return nil, err
	}
	dst, done := j.adder(max(j.Host.Jobs, 2), j.NoCheckSigs)
	defer done()
	return j.copyPaths(ctx, cache, dst, closure, missing, j.Host.Jobs)
}

// fromHostDump copies the closure of the roots from the host with
// FromHost: the closure's infos in one reply, then the missing NARs back
// to back through the remote's zstd or xz.
func (j *Job) fromHostDump(ctx context.Context) (*HostResult, error) {
	dst, done := j.adder(1, true)
	defer done()
	return FromHost(ctx, j.Remote, j.Roots, j.Local, dst, j.Host)
}

// fromHost copies the closure of the roots from the host's nix-daemon
// --stdio over ssh into the local store on the one session: every NAR is
// asked for at once and they come back to back, each added to the local
// store as it arrives, references first.
func (j *Job) fromHost(ctx context.Context) (*HostResult, error) {
	so := j.Host.SSH
	sc, err := ssh.Dial(ctx, j.Remote, []string{"nix-daemon", "--stdio"}, so)
	if err != nil {
		return nil, err
	}
	defer sc.Close()
	remote, err := daemon.NewConn(ctx, sc, daemon.Options{SkipSetOptions: true})
	if err != nil {
		return nil, SessionError(j.Remote, sc, so, fmt.Errorf("%w: %w", ErrNoAnswer, err))
	}
	defer remote.Close()
	closure, err := Closure(ctx, remote, j.Roots)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", j.Remote, err)
	}
	if j.IncludeOutputs {
		outs, err := remoteDrvOutputs(ctx, remote, closure)
		if err != nil {
			return nil, err
		}
		if valid, err := remote.QueryValidPaths(ctx, outs, false); err != nil {
			return nil, err
		} else if len(valid) > 0 {
			if closure, err = Closure(ctx, remote, append(j.Roots, valid...)); err != nil {
				return nil, err
			}
		}
	}
	missing, err := Missing(ctx, j.Local, closure, j.UseSubstitutes)
	if err != nil {
		return nil, err
	}
	// As nix-copy-closure: the paths come from a host the user logs
	// into, so signatures are not required (an untrusted local user still
	// needs them: the daemon ignores NoCheckSigs then).
	dst, done := j.adder(1, true)
	defer done()
	return j.copyPaths(ctx, remote, dst, closure, missing, 1) // one session: the NARs stream in order
}

// adder adds paths to the local store through a pool of size connections.
func (j *Job) adder(size int, noCheckSigs bool) (*daemonAdder, func()) {
	pool := daemon.NewPool(size, func(ctx context.Context) (*daemon.Conn, error) {
		return daemon.Dial(ctx, j.LocalSocket, daemon.Options{SkipSetOptions: true})
	})
	return &daemonAdder{pool: pool, flags: daemon.AddFlags{NoCheckSigs: noCheckSigs}}, func() { pool.Close() }
}

// copyPaths tells the caller the plan, then copies the missing paths.
func (j *Job) copyPaths(ctx context.Context, src Source, dst store.NarAdder, closure, missing []*store.PathInfo, jobs int) (*HostResult, error) {
	if j.Host.Missing != nil {
		j.Host.Missing(closure, missing)
	}
	res := &HostResult{Protocol: "file", Compression: "none"}
	if len(missing) == 0 {
		return res, nil
	}
	if err := Copy(ctx, src, dst, missing, Options{Jobs: jobs, Progress: j.Host.Progress, Sending: j.Host.Sending}); err != nil {
		return nil, err
	}
	res.Sent = missing
	return res, nil
}

// remoteDrvOutputs reads the .drv files among infos through the remote
// daemon (their NARs are the file) and lists their outputs.
func remoteDrvOutputs(ctx context.Context, remote *daemon.Conn, infos []*store.PathInfo) ([]store.Path, error) {
	var outs []store.Path
	for _, info := range infos {
		if !info.Path.IsDerivation() {
			continue
		}
		var nb bytes.Buffer
		if err := remote.NarFromPath(ctx, info.Path, &nb); err != nil {
			return nil, err
		}
		data, err := narFileContents(nb.Bytes())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", info.Path, err)
		}
		d, err := drv.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", info.Path, err)
		}
		for _, o := range d.Outputs {
			if !o.Path.IsZero() {
				outs = append(outs, o.Path)
			}
		}
	}
	return outs, nil
}

// daemonAdder adds paths through a pool of daemon connections with flags.
type daemonAdder struct {
	pool  *daemon.Pool
	flags daemon.AddFlags
}

func (a *daemonAdder) AddToStoreNar(ctx context.Context, info *store.PathInfo, r io.Reader) error {
	c, err := a.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer a.pool.Release(c)
	return c.AddToStoreNarFlags(ctx, info, r, a.flags)
}

var _ store.NarAdder = (*daemonAdder)(nil)

var errNotRegular = errors.New("copy: NAR is not a single regular file")

// narFileContents returns the contents of a NAR holding one regular file
// (a .drv).
func narFileContents(data []byte) ([]byte, error) {
	r := nar.NewReader(bytes.NewReader(data))
	h, err := r.Next()
	if err != nil {
		return nil, err
	}
	if h.Type != nar.TypeRegular {
		return nil, errNotRegular
	}
	return io.ReadAll(r)
}
