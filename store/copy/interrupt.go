package copy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/ssh"
)

// Interrupted reports whether a copy that failed with err was stopped by
// a signal, which cancels ctx (signal.NotifyContext). Ctrl-C reaches ssh
// as well, which is in the same process group, so the session can die and
// fail the copy a moment before the signal cancels ctx: when the session
// broke, the signal gets 300 ms to arrive before the failure counts as
// one of its own.
func Interrupted(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return true
	}
	var se *ssh.Error
	var ce *ConnectError
	if !errors.As(err, &se) && !errors.As(err, &ce) && !errors.Is(err, io.ErrUnexpectedEOF) &&
		!errors.Is(err, io.EOF) && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, ssh.ErrClosed) {
		return false
	}
	t := time.NewTimer(300 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return true
	case <-t.C:
		return false
	}
}

// CheckRootsValid fails when one of j's roots is not valid in the local
// store, naming the first such root in path order, as Nix 2.8's
// nix-copy-closure --to does before it contacts the host.
func (j *Job) CheckRootsValid(ctx context.Context) error {
	valid, err := j.Local.QueryValidPaths(ctx, j.Roots, false)
	if err != nil {
		return err
	}
	sorted := slices.Clone(j.Roots)
	slices.SortFunc(sorted, func(a, b store.Path) int { return strings.Compare(a.String(), b.String()) })
	for _, p := range sorted {
		if !slices.Contains(valid, p) {
			return fmt.Errorf("path '%s' is not valid", p)
		}
	}
	return nil
}

// Lacking asks j's destination afresh how many of missing, the paths of
// closure it lacked when j started (HostOptions.Missing), it still lacks:
// how far an interrupted copy got. To a host that is one more short ssh
// session (HostLacks); from one, a new connection to the local daemon, as
// the signal may have cut j's own mid-request. A file:// destination is
// not asked.
func (j *Job) Lacking(ctx context.Context, closure, missing []*store.PathInfo) (int, error) {
	if !j.From {
		lacks, err := HostLacks(ctx, j.Remote, closure, HostOptions{SSH: j.Host.SSH})
		return len(lacks), err
	}
	local, err := daemon.Dial(ctx, j.LocalSocket, daemon.Options{SkipSetOptions: true})
	if err != nil {
		return 0, err
	}
	defer local.Close()
	paths := make([]store.Path, len(missing))
	for i, info := range missing {
		paths[i] = info.Path
	}
	valid, err := local.QueryValidPaths(ctx, paths, false)
	return len(missing) - len(valid), err
}
