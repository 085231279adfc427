package copy

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/nar/compress"
	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/ssh"
)

// DeltaOptions tune delta copies (HostOptions.Delta). The zero value
// tries a delta whenever the remote has likely predecessors of the paths
// to send, with this program as the remote's nbuild.
type DeltaOptions struct {
	// Off always sends whole NARs.
	Off bool
	// Binary is the nbuild executable sent to a remote of this machine's
	// architecture; "" means this program (os.Executable), which must then
	// run Receive when called as ReceiveCommand.
	Binary string
	// Remote is an nbuild on the remote to use instead of the cached or
	// sent one (for a remote of another architecture). When it is empty
	// and the remote's architecture differs, "nbuild" on the remote's PATH
	// is tried.
	Remote string
	// MinBytes is how many NAR bytes of the paths to send must have a
	// likely predecessor on the remote before the binary is sent there;
	// 0 means the binary's own size. A binary already in the remote's
	// cache is used whatever the size.
	MinBytes int64
	// CacheDir keeps the digests of the files sent (digestcache.go), so
	// that sending a path again, or a path whose files were sent before,
	// does not read them to find what the remote has; "" means
	// nbuild/digests in the user's cache directory, "none" no cache.
	CacheDir string
}

// deltaWanted reports whether ToHost should look for predecessors.
func deltaWanted(opts HostOptions) bool {
	return !opts.Delta.Off && opts.Source == nil && !opts.NoDaemon
}

// deltaFailure is a delta copy that failed after the remote nbuild took
// over the session: the session is gone, the paths it acknowledged are
// valid, and the rest can still go the plain way.
type deltaFailure struct{ err error }

func (e *deltaFailure) Error() string { return "delta copy: " + e.err.Error() }
func (e *deltaFailure) Unwrap() error { return e.err }

// sendDelta copies missing as a delta if the remote has predecessors and
// an nbuild to assemble them. It reports false with res.Delta.Why set when
// the session is to go on the plain way.
func sendDelta(ctx context.Context, sc *ssh.Conn, q *hostState, missing []*store.PathInfo, opts HostOptions, res *HostResult) (bool, error) {
	st := &DeltaStats{}
	res.Delta = st
	if q.proto != "daemon" {
		st.Why = "the remote has no nix-daemon"
		return false, nil
	}
	cands, withPred := matchPredecessors(missing, q.hints)
	if withPred == 0 {
		st.Why = "no likely predecessors on the remote"
		return false, nil
	}
	hctx, stopHashing := context.WithCancel(ctx)
	defer stopHashing()
	paths := hashPaths(hctx, missing, openDigestCache(opts.Delta.CacheDir))
	exe, err := remoteReceiver(sc, q, withPred, opts.Delta, st)
	if err != nil || exe == "" {
		return false, err
	}
	if _, err := fmt.Fprintf(sc, "run %s\n", exe); err != nil {
		return false, err
	}
	st.Used = true
	if err := runDelta(ctx, sc, q.br, missing, cands, paths, opts, res); err != nil {
		return false, &deltaFailure{err}
	}
	return true, nil
}

// pname is a derivation name without its version, as Nix splits names
// (2.8 names.cc DrvName): the version starts at the first dash followed
// by anything but a letter.
func pname(name string) string {
	for i := 0; i+1 < len(name); i++ {
		if name[i] == '-' && !isLetter(name[i+1]) {
			return name[:i]
		}
	}
	return name
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// maxCandidates bounds the candidates sent per path and list.
const maxCandidates = 32

// matchPredecessors finds, for each missing path, the remote's store
// entries of the same name and of the same name without version, and
// returns the NAR bytes of the paths that have any.
func matchPredecessors(missing []*store.PathInfo, hints []string) (cands [][2][]string, withPred int64) {
	if len(missing) == 0 {
		return nil, 0
	}
	dir := strings.TrimSuffix(missing[0].Path.String(), "/"+missing[0].Path.Base())
	sending := make(map[store.Path]bool, len(missing))
	for _, info := range missing {
		sending[info.Path] = true
	}
	byName := map[string][]string{}
	byPname := map[string][]string{}
	for _, h := range hints {
		p, err := store.ParsePath(dir + "/" + h)
		if err != nil || sending[p] || p.IsDerivation() {
			continue
		}
		byName[p.Name()] = append(byName[p.Name()], p.String())
		byPname[pname(p.Name())] = append(byPname[pname(p.Name())], p.String())
	}
	cands = make([][2][]string, len(missing))
	for i, info := range missing {
		name := info.Path.Name()
		exact := byName[name]
		var similar []string
		for _, s := range byPname[pname(name)] {
			if !slices.Contains(exact, s) {
				similar = append(similar, s)
			}
		}
		cands[i] = [2][]string{capList(exact), capList(similar)}
		if len(exact)+len(similar) > 0 {
			withPred += int64(info.NarSize)
		}
	}
	return cands, withPred
}

// capList keeps the last maxCandidates entries (store listings are in no
// useful order; any will do).
func capList(s []string) []string {
	return s[max(len(s)-maxCandidates, 0):]
}

// goArch maps uname -m to Go's GOARCH.
var goArch = map[string]string{
	"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
	"i686": "386", "i386": "386", "armv7l": "arm", "armv6l": "arm",
	"riscv64": "riscv64", "ppc64le": "ppc64le", "s390x": "s390x",
}

// remoteReceiver finds the nbuild that will run Receive on the remote:
// opts.Remote, else for a remote of this machine's architecture the
// binary in its cache or sent there now, else "nbuild" on its PATH. It
// returns "" with st.Why set when there is none to use.
func remoteReceiver(sc *ssh.Conn, q *hostState, withPred int64, opts DeltaOptions, st *DeltaStats) (string, error) {
	if opts.Remote != "" {
		st.Binary = opts.Remote
		return tryReceiver(sc, q.br, opts.Remote, st)
	}
	if runtime.GOOS != "linux" || goArch[q.machine] != runtime.GOARCH {
		st.Binary = "nbuild"
		return tryReceiver(sc, q.br, "nbuild", st)
	}
	bin, err := localBinary(opts.Binary)
	if err != nil {
		st.Why = err.Error()
		return "", nil
	}
	if _, err := fmt.Fprintf(sc, "bin %s\n", bin.sum); err != nil {
		return "", err
	}
	line, err := readLine(q.br)
	if err != nil {
		return "", err
	}
	if f, ok := strings.CutPrefix(line, "ok "); ok {
		st.Binary = "cached"
		return tryReceiver(sc, q.br, f, st)
	}
	if min := cmp.Or(opts.MinBytes, bin.size); withPred < min {
		st.Why = fmt.Sprintf("only %d bytes have predecessors, fewer than the %d it takes to send nbuild", withPred, min)
		return "", nil
	}
	data, err := os.ReadFile(bin.path)
	if err != nil {
		st.Why = err.Error()
		return "", nil
	}
	if fmt.Sprintf("%x", sha256.Sum256(data)) != bin.sum {
		st.Why = bin.path + " changed while nbuild ran"
		return "", nil
	}
	dec := "-"
	if q.hasZstd {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return "", err
		}
		data, dec = enc.EncodeAll(data, nil), "zstd"
	}
	if _, err := fmt.Fprintf(sc, "put %s %d %s\n", bin.sum, len(data), dec); err != nil {
		return "", err
	}
	if _, err := sc.Write(data); err != nil {
		return "", err
	}
	if line, err = readLine(q.br); err != nil {
		return "", err
	}
	f, ok := strings.CutPrefix(line, "ok ")
	if !ok {
		st.Why = "the remote could not keep the nbuild binary sent to it"
		return "", nil
	}
	st.Binary = "sent"
	return tryReceiver(sc, q.br, f, st)
}

// tryReceiver asks the remote to run exe --hello and returns exe if it
// speaks this protocol version.
func tryReceiver(sc *ssh.Conn, br *bufio.Reader, exe string, st *DeltaStats) (string, error) {
	if strings.ContainsAny(exe, "\n") {
		st.Why = fmt.Sprintf("remote nbuild %q: not a file name", exe)
		return "", nil
	}
	if _, err := fmt.Fprintf(sc, "try %s\n", exe); err != nil {
		return "", err
	}
	line, err := readLine(br)
	if err != nil {
		return "", err
	}
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != deltaMagic || f[1] != fmt.Sprint(deltaVersion) {
		st.Why = fmt.Sprintf("no usable nbuild at %s on the remote (it said %q)", exe, line)
		return "", nil
	}
	return exe, nil
}

// binaryInfo is a local executable's path, size and SHA-256 (hex).
type binaryInfo struct {
	path string
	size int64
	sum  string
}

var binaries sync.Map // path → *binaryInfo

// localBinary hashes the nbuild binary to send (once per path).
func localBinary(path string) (*binaryInfo, error) {
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("cannot find this program's binary: %w", err)
		}
		path = exe
	}
	if b, ok := binaries.Load(path); ok {
		return b.(*binaryInfo), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, err
	}
	b := &binaryInfo{path: path, size: n, sum: hex.EncodeToString(h.Sum(nil))}
	binaries.Store(path, b)
	return b, nil
}

// sendPath is a path to send, walked in NAR order, with the digests of its
// files of at least minRefSize bytes once ready is closed.
type sendPath struct {
	info    *store.PathInfo
	entries []sendEntry
	ready   chan struct{}
	err     error
}

type sendEntry struct {
	narPath, osPath, target string
	typ                     nar.Type
	exec                    bool
	size                    int64
	digest                  digest
	found                   []string // hash parts of the path's references (and its own) in the file
}

// hashPaths walks and hashes the paths to send in the background, one
// path after another, each path's files on all cores, those the cache
// knows from the cache.
func hashPaths(ctx context.Context, missing []*store.PathInfo, cache *digestCache) []*sendPath {
	paths := make([]*sendPath, len(missing))
	for i, info := range missing {
		paths[i] = &sendPath{info: info, ready: make(chan struct{})}
	}
	go func() {
		for _, sp := range paths {
			sp.err = sp.hash(ctx, cache)
			close(sp.ready)
		}
	}()
	return paths
}

func (sp *sendPath) hash(ctx context.Context, cache *digestCache) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := walkNar(sp.info.Path.String(), "", &sp.entries); err != nil {
		return err
	}
	cached := cache.load(sp.info)
	set := hashSet(sp.info)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	fresh := false
	for i := range sp.entries {
		e := &sp.entries[i]
		if e.typ != nar.TypeRegular || e.size < minRefSize {
			continue
		}
		if c, ok := cached[e.narPath]; ok && c.size == e.size {
			e.digest, e.found = c.digest, c.found
			continue
		}
		fresh = true
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			f, err := os.Open(e.osPath)
			if err != nil {
				return err
			}
			defer f.Close()
			h, sc := sha256.New(), newScanner(set)
			if n, err := io.Copy(io.MultiWriter(h, sc), f); err != nil {
				return err
			} else if n != e.size {
				return fmt.Errorf("%s: read %d bytes, expected %d", e.osPath, n, e.size)
			}
			h.Sum(e.digest[:0])
			e.found = sc.Found()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if fresh {
		var files []cachedFile
		for _, e := range sp.entries {
			if e.typ == nar.TypeRegular && e.size >= minRefSize {
				files = append(files, cachedFile{rel: e.narPath, size: e.size, digest: e.digest, found: e.found})
			}
		}
		cache.put(sp.info, files)
	}
	return nil
}

// walkNar appends the entries of the file system object at osPath in NAR
// order, as nar.DumpPath visits them.
func walkNar(osPath, narPath string, out *[]sendEntry) error {
	fi, err := os.Lstat(osPath)
	if err != nil {
		return err
	}
	e := sendEntry{narPath: narPath, osPath: osPath}
	switch mode := fi.Mode(); {
	case mode.IsRegular():
		e.typ, e.size, e.exec = nar.TypeRegular, fi.Size(), mode&0o100 != 0
		*out = append(*out, e)
	case mode&os.ModeSymlink != 0:
		if e.target, err = os.Readlink(osPath); err != nil {
			return err
		}
		e.typ = nar.TypeSymlink
		*out = append(*out, e)
	case mode.IsDir():
		e.typ = nar.TypeDirectory
		*out = append(*out, e)
		names, err := nar.DirNames(osPath)
		if err != nil {
			return err
		}
		for _, name := range names {
			child := name
			if narPath != "" {
				child = narPath + "/" + name
			}
			if err := walkNar(osPath+"/"+name, child, out); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%s: %w %v", osPath, nar.ErrUnsupported, mode.Type())
	}
	return nil
}

// readPredsReply reads Receive's answer to the paths (step 3): each of
// the n paths' predecessor ("" for none), and the digests of the files the
// remote can make, each with its number in the reply (what a file sent by
// reference names).
func readPredsReply(wr *wire.Reader, n int) ([]string, map[digest]uint64, error) {
	d := &wire.Decoder{R: wr}
	switch tag := d.U64(); tag {
	case ackFail:
		return nil, nil, errors.New(d.Str())
	case ackPreds:
	default:
		if d.Err == nil {
			return nil, nil, fmt.Errorf("the remote nbuild answered %d", tag)
		}
	}
	if k := d.U64(); d.Err == nil && k != uint64(n) {
		return nil, nil, fmt.Errorf("the remote nbuild answered %d predecessors for %d paths", k, n)
	}
	preds := make([]string, n)
	for i := range preds {
		if preds[i] = d.Str(); preds[i] != "" && d.Err == nil {
			if _, err := store.ParsePath(preds[i]); err != nil {
				return nil, nil, fmt.Errorf("the remote nbuild named a predecessor %q: %w", preds[i], err)
			}
		}
	}
	if d.Err != nil {
		return nil, nil, d.Err
	}
	digs, err := wr.ReadBytesLimit(64<<20, "digests")
	if err != nil {
		return nil, nil, err
	}
	if len(digs)%sha256.Size != 0 {
		return nil, nil, fmt.Errorf("the remote nbuild sent %d bytes of digests", len(digs))
	}
	have := make(map[digest]uint64, len(digs)/sha256.Size)
	for i := 0; i < len(digs); i += sha256.Size {
		if _, dup := have[digest(digs[i:i+sha256.Size])]; !dup {
			have[digest(digs[i:i+sha256.Size])] = uint64(i / sha256.Size)
		}
	}
	return preds, have, nil
}

// ackResult is what the ack reader learnt.
type ackResult struct {
	acked  int
	err    error
	said   bool // err is the remote's message
	done   bool
	index  time.Duration
	assem  time.Duration
	reused int64
}

// runDelta speaks the delta protocol with Receive (delta.go) over sc.
func runDelta(ctx context.Context, sc *ssh.Conn, br *bufio.Reader, missing []*store.PathInfo,
	cands [][2][]string, paths []*sendPath, opts HostOptions, res *HostResult) error {
	st := res.Delta
	wr := wire.NewReader(br)
	wr.MaxString = 64 << 20
	d := &wire.Decoder{R: wr}
	b := wire.AppendUint64(nil, uint64(len(missing)))
	for i, info := range missing {
		b = appendDeltaInfo(b, info)
		b = wire.AppendStrings(b, cands[i][0])
		b = wire.AppendStrings(b, cands[i][1])
	}
	if _, err := sc.Write(b); err != nil {
		return err
	}
	if magic, ver := d.Str(), d.U64(); d.Err == nil && (magic != deltaMagic || ver != deltaVersion) {
		return fmt.Errorf("the remote nbuild speaks %q version %d", magic, ver)
	}
	if d.Err != nil {
		return fmt.Errorf("no answer from the remote nbuild: %w", d.Err)
	}
	// The reply: predecessors, then the digests of what the remote has.
	preds, have, err := readPredsReply(wr, len(missing))
	if err != nil {
		return err
	}
	ri := newRemoteIndex(missing, preds, have)
	ri.covered = 0 // the digests come path by path
	for _, p := range preds {
		if p != "" {
			st.Predecessors++
		}
	}

	acks := make(chan ackResult, 1)
	var ackedMu sync.Mutex
	acked := 0
	go func() {
		r := ackResult{}
		defer func() { ri.end(); acks <- r }()
		for {
			tag, err := wr.ReadUint64()
			if err != nil {
				r.err = fmt.Errorf("the remote nbuild stopped: %w", err)
				sc.Kill()
				return
			}
			switch tag {
			case ackPath:
				if _, err := wr.ReadUint64(); err != nil {
					r.err = err
					return
				}
				r.acked++
				ackedMu.Lock()
				acked = r.acked
				ackedMu.Unlock()
			case ackFail:
				msg, _ := wr.ReadString()
				r.err, r.said = errors.New(msg), true
				sc.Kill()
				return
			case ackDigests:
				k, err := wr.ReadUint64()
				if err != nil {
					r.err = err
					return
				}
				digs, err := wr.ReadBytesLimit(64<<20, "digests")
				if err != nil || k >= uint64(len(missing)) || len(digs)%sha256.Size != 0 {
					r.err = fmt.Errorf("the remote nbuild sent digests for path %d of %d: %v", k, len(missing), err)
					sc.Kill()
					return
				}
				ri.add(int(k), digs)
			case ackDone:
				dd := &wire.Decoder{R: wr}
				r.index, r.assem, r.reused = time.Duration(dd.U64()), time.Duration(dd.U64()), int64(dd.U64())
				r.err, r.done = dd.Err, dd.Err == nil
				return
			default:
				r.err = fmt.Errorf("the remote nbuild sent %d", tag)
				sc.Kill()
				return
			}
		}
	}()

	t := newTracker(missing, opts.Progress, opts.Sending)
	cw := &byteCounter{w: sc}
	werr := writeDelta(ctx, cw, paths, ri, opts, t, st)
	if werr != nil {
		// The remote waits for the rest of the stream: end the session
		// so that the ack reader returns.
		sc.Kill()
	}
	r := <-acks
	st.WireBytes = cw.n
	st.RemoteIndex, st.RemoteAssemble = r.index, r.assem
	ackedMu.Lock()
	res.Sent = missing[:acked]
	ackedMu.Unlock()
	switch {
	case r.said:
		return r.err // the remote's own words say most
	case werr != nil:
		return werr // the session's end, which the ack reader saw, follows from it
	case r.err != nil:
		return r.err
	}
	if !r.done {
		return errors.New("the remote nbuild did not finish")
	}
	if r.reused != st.ReusedBytes {
		return fmt.Errorf("the remote reused %d bytes, %d expected", r.reused, st.ReusedBytes)
	}
	res.Sent = missing
	res.Compression = "zstd"
	if err := sc.CloseWrite(); err != nil {
		return err
	}
	return sc.Wait(ctx)
}

// writeDelta streams the records of every path, compressed.
func writeDelta(ctx context.Context, w io.Writer, paths []*sendPath, ri *remoteIndex,
	opts HostOptions, t *tracker, st *DeltaStats) error {
	zw, err := compress.NewWriter(w, "zstd", compress.Options{Level: opts.Level, Concurrency: opts.Jobs, Context: ctx, Adaptive: true})
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(zw, 256<<10)
	var b []byte
	for i, sp := range paths {
		select {
		case <-sp.ready:
		case <-ctx.Done():
			return ctx.Err()
		}
		if sp.err != nil {
			return sp.err
		}
		if !ri.wait(i) {
			return errors.New("the remote nbuild stopped answering")
		}
		t.pathStart(sp.info)
		st.NarBytes += int64(sp.info.NarSize)
		b = wire.AppendUint64(wire.AppendUint64(b[:0], tagPath), uint64(i))
		for _, e := range sp.entries {
			switch e.typ {
			case nar.TypeDirectory:
				b = wire.AppendString(wire.AppendUint64(b, tagDir), e.narPath)
			case nar.TypeSymlink:
				b = wire.AppendString(wire.AppendUint64(b, tagLink), e.narPath)
				b = wire.AppendString(b, e.target)
			case nar.TypeRegular:
				idx, ref := ri.lookup(e.digest)
				ref = ref && e.size >= minRefSize
				if !ref {
					if idx, patch, ok := ri.patch(i, &e); ok {
						b = wire.AppendString(wire.AppendUint64(b, tagPatch), e.narPath)
						b = wire.AppendBool(b, e.exec)
						b = wire.AppendUint64(b, uint64(e.size))
						b = wire.AppendUint64(b, idx)
						b = wire.AppendBytes(b, patch)
						st.PatchedFiles++
						st.PatchedBytes += e.size
						st.PatchBytes += int64(len(patch))
						t.add(int(e.size))
						continue
					}
				}
				tag := uint64(tagFile)
				if ref {
					tag = tagRef
				}
				b = wire.AppendString(wire.AppendUint64(b, tag), e.narPath)
				b = wire.AppendBool(b, e.exec)
				b = wire.AppendUint64(b, uint64(e.size))
				if ref {
					b = wire.AppendUint64(b, idx)
					st.ReusedBytes += e.size
				} else {
					if _, err := bw.Write(b); err != nil {
						return err
					}
					b = b[:0]
					if err := copyFile(bw, e); err != nil {
						return err
					}
					st.LiteralBytes += e.size
				}
				t.add(int(e.size))
			}
			if len(b) > 32<<10 {
				if _, err := bw.Write(b); err != nil {
					return err
				}
				b = b[:0]
			}
		}
		b = wire.AppendUint64(b, tagEnd)
		if _, err := bw.Write(b); err != nil {
			return err
		}
		b = b[:0]
		t.pathDone()
	}
	if _, err := bw.Write(wire.AppendUint64(nil, tagDone)); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return zw.Close()
}

// copyFile writes a regular file's contents and padding.
func copyFile(w io.Writer, e sendEntry) error {
	f, err := os.Open(e.osPath)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.CopyN(w, f, e.size)
	if err != nil {
		return fmt.Errorf("%s: read %d of %d bytes: %w", e.osPath, n, e.size, err)
	}
	return wire.WritePadding(w, uint64(e.size))
}

// byteCounter counts what goes through it.
type byteCounter struct {
	w io.Writer
	n int64
}

func (c *byteCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
