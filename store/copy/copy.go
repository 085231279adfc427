// Package copy moves store path closures between stores: the engine behind
// `nbuild copy` (a drop-in for nix-copy-closure) and the remote builders'
// input and output transfers.
//
// Vocabulary: the closure of some roots is every path they reference,
// directly or not, listed references first (a valid order to register paths
// in); the missing paths are those of a closure the destination does not
// hold, found with one query. A copy sends only missing paths and never
// makes a path valid before its references: every destination registers a
// path only after its whole NAR arrived and matched its hash.
//
// Two ways to send: Copy works between any source and destination that
// implement the small store interfaces (a local daemon, a file:// binary
// cache, a remote daemon), several NARs at once; ToHost is the fast way to
// a remote machine over ssh, one session whose NAR stream is compressed and
// never waits for a per-path reply (see remote.go).
//
// A delta copy is how ToHost sends paths that have a predecessor on the
// remote: a path of the same name (or the same name without version), as
// the previous generation of a system has. The remote's nbuild (Receive,
// run as `nbuild __copy-receive`) makes each new path from its
// predecessor's files, with the predecessor's store hashes rewritten to
// the new ones (a mass rebuild changes little else), and only the files it
// cannot make cross the link; its daemon checks each NAR's hash as for any
// import. See delta.go for the protocol, HostOptions.Delta and
// HostResult.Delta for the knobs and the account.
//
// Printer tells a person how a copy goes, with nix-copy-closure's lines
// and a status line.
package copy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/store"
)

// PathInfosQuerier answers many path-info queries at once (pipelined over
// one connection); Closure uses it when the source has it.
type PathInfosQuerier interface {
	QueryPathInfos(ctx context.Context, paths []store.Path) ([]*store.PathInfo, error)
}

// Closure returns the path infos of the closure of roots in src, references
// before referrers (ties broken by path, so the order is deterministic). It
// asks for one level of the reference graph at a time, so a source that
// pipelines (PathInfosQuerier) costs one round trip per level.
func Closure(ctx context.Context, src store.PathInfoQuerier, roots []store.Path) ([]*store.PathInfo, error) {
	infos := map[store.Path]*store.PathInfo{}
	level := dedup(roots)
	for len(level) > 0 {
		got, err := queryInfos(ctx, src, level)
		if err != nil {
			return nil, err
		}
		var next []store.Path
		for i, info := range got {
			if info == nil {
				return nil, fmt.Errorf("%s: %w", level[i], store.ErrNotValid)
			}
			infos[info.Path] = info
		}
		for _, info := range got {
			for _, r := range info.References {
				if _, ok := infos[r]; !ok {
					next = append(next, r)
				}
			}
		}
		level = dedup(next)
	}
	return topoSort(infos)
}

func queryInfos(ctx context.Context, src store.PathInfoQuerier, paths []store.Path) ([]*store.PathInfo, error) {
	if m, ok := src.(PathInfosQuerier); ok {
		return m.QueryPathInfos(ctx, paths)
	}
	out := make([]*store.PathInfo, len(paths))
	for i, p := range paths {
		info, err := src.QueryPathInfo(ctx, p)
		if err != nil {
			return nil, err
		}
		out[i] = info
	}
	return out, nil
}

func dedup(paths []store.Path) []store.Path {
	seen := make(map[store.Path]bool, len(paths))
	out := make([]store.Path, 0, len(paths))
	for _, p := range paths {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// topoSort orders infos references first; a reference outside infos is an
// error (the source's metadata is inconsistent).
func topoSort(infos map[store.Path]*store.PathInfo) ([]*store.PathInfo, error) {
	keys := make([]store.Path, 0, len(infos))
	for p := range infos {
		keys = append(keys, p)
	}
	slices.SortFunc(keys, func(a, b store.Path) int { return compareText(a.String(), b.String()) })
	const (
		unseen = iota
		active
		done
	)
	state := make(map[store.Path]int, len(infos))
	out := make([]*store.PathInfo, 0, len(infos))
	var visit func(p store.Path) error
	visit = func(p store.Path) error {
		switch state[p] {
		case done:
			return nil
		case active:
			return fmt.Errorf("copy: reference cycle through %s", p)
		}
		state[p] = active
		info, ok := infos[p]
		if !ok {
			return fmt.Errorf("copy: %s is referenced but its path info is missing", p)
		}
		refs := slices.Clone(info.References)
		slices.SortFunc(refs, func(a, b store.Path) int { return compareText(a.String(), b.String()) })
		for _, r := range refs {
			if r != p {
				if err := visit(r); err != nil {
					return err
				}
			}
		}
		state[p] = done
		out = append(out, info)
		return nil
	}
	for _, p := range keys {
		if err := visit(p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func compareText(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Missing returns those of infos (order kept) that dst does not hold, with
// one query.
func Missing(ctx context.Context, dst store.ValidPathQuerier, infos []*store.PathInfo, substitute bool) ([]*store.PathInfo, error) {
	if len(infos) == 0 {
		return nil, nil
	}
	paths := make([]store.Path, len(infos))
	for i, info := range infos {
		paths[i] = info.Path
	}
	valid, err := dst.QueryValidPaths(ctx, paths, substitute)
	if err != nil {
		return nil, err
	}
	have := make(map[store.Path]bool, len(valid))
	for _, p := range valid {
		have[p] = true
	}
	var out []*store.PathInfo
	for _, info := range infos {
		if !have[info.Path] {
			out = append(out, info)
		}
	}
	return out, nil
}

// Progress is a snapshot of a running copy, for a progress display.
type Progress struct {
	Paths, TotalPaths int
	// Bytes counts NAR bytes handed to the destination (before any
	// compression); TotalBytes is the sum of the NAR sizes to send.
	Bytes, TotalBytes int64
}

// Options tune Copy. The zero value copies two NARs at a time and reports
// no progress.
type Options struct {
	// Jobs is how many NARs are read and added at once; 0 means 2.
	Jobs int
	// Progress, when set, is called after every path and about every MiB
	// of NAR data; calls may come from several goroutines, one at a time.
	Progress func(Progress)
	// Sending, when set, is called as each path's copy starts, as
	// Progress is.
	Sending func(info *store.PathInfo)
}

// Source is what Copy reads from.
type Source interface {
	store.NarReader
}

// NarStreamer is a Source that can send many NARs back to back, without a
// round trip per path (daemon.Conn over ssh). Copy streams from it when it
// copies one path at a time.
type NarStreamer interface {
	NarsFromPaths(ctx context.Context, paths []store.Path, each func(i int, r io.Reader) error) error
}

// Copy adds infos (in dependency order, typically the result of Missing)
// to dst with NARs read from src, opts.Jobs at a time. A path is added
// only after every reference of it that is also being copied has been
// added, so the destination never holds a path whose references it lacks.
// On error, paths already added stay (they are complete and verified) and a
// rerun sends only the rest.
func Copy(ctx context.Context, src Source, dst store.NarAdder, infos []*store.PathInfo, opts Options) error {
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = 2
	}
	tracker := newTracker(infos, opts.Progress, opts.Sending)
	if ns, ok := src.(NarStreamer); ok && jobs == 1 {
		return stream(ctx, ns, dst, infos, tracker)
	}
	done := make(map[store.Path]chan struct{}, len(infos))
	for _, info := range infos {
		done[info.Path] = make(chan struct{})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for _, info := range infos {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			for _, r := range info.References {
				if ch, ok := done[r]; ok && r != info.Path {
					select {
					case <-ch:
					case <-gctx.Done():
						return gctx.Err()
					}
				}
			}
			if err := copyOne(gctx, src, dst, info, tracker); err != nil {
				return fmt.Errorf("copying %s: %w", info.Path, err)
			}
			close(done[info.Path])
			tracker.pathDone()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// copyOne streams one NAR from src into dst through a pipe.
func copyOne(ctx context.Context, src Source, dst store.NarAdder, info *store.PathInfo, t *tracker) error {
	t.pathStart(info)
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		err := src.NarFromPath(ctx, info.Path, &countWriter{w: pw, t: t})
		pw.CloseWithError(err)
		errc <- err
	}()
	err := dst.AddToStoreNar(ctx, info, pr)
	pr.CloseWithError(errAborted)
	serr := <-errc
	if err == nil && serr != nil && !errors.Is(serr, errAborted) {
		err = serr
	}
	return err
}

var errAborted = errors.New("copy: destination stopped reading")

// stream adds infos one after the other, in their order (references
// first), as src sends them back to back.
func stream(ctx context.Context, src NarStreamer, dst store.NarAdder, infos []*store.PathInfo, t *tracker) error {
	paths := make([]store.Path, len(infos))
	for i, info := range infos {
		paths[i] = info.Path
	}
	err := src.NarsFromPaths(ctx, paths, func(i int, r io.Reader) error {
		t.pathStart(infos[i])
		if err := dst.AddToStoreNar(ctx, infos[i], &countReader{r: r, t: t}); err != nil {
			return fmt.Errorf("copying %s: %w", infos[i].Path, err)
		}
		t.pathDone()
		return nil
	})
	if err != nil {
		return err
	}
	return ctx.Err()
}

type countReader struct {
	r io.Reader
	t *tracker
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.t.add(n)
	return n, err
}

// tracker counts progress for Copy and ToHost.
type tracker struct {
	mu       sync.Mutex
	fn       func(Progress)
	sending  func(*store.PathInfo)
	p        Progress
	bytes    atomic.Int64
	reported int64
}

func newTracker(infos []*store.PathInfo, fn func(Progress), sending func(*store.PathInfo)) *tracker {
	t := &tracker{fn: fn, sending: sending}
	t.p.TotalPaths = len(infos)
	for _, info := range infos {
		t.p.TotalBytes += int64(info.NarSize)
	}
	return t
}

func (t *tracker) add(n int) {
	b := t.bytes.Add(int64(n))
	if t.fn == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if b-t.reported >= 1<<20 {
		t.reported = b
		t.p.Bytes = b
		t.fn(t.p)
	}
}

func (t *tracker) pathStart(info *store.PathInfo) {
	if t.sending == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sending(info)
}

func (t *tracker) pathDone() {
	if t.fn == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.Paths++
	t.p.Bytes = t.bytes.Load()
	t.fn(t.p)
}

type countWriter struct {
	w io.Writer
	t *tracker
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.t.add(n)
	return n, err
}

// FileSystem reads NARs straight from the local store's files, which are
// world-readable: no daemon round trip, and safe for concurrent use.
type FileSystem struct{}

// NarFromPath dumps p's NAR to w.
func (FileSystem) NarFromPath(ctx context.Context, p store.Path, w io.Writer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return nar.DumpPath(w, p.String())
}
