package copy

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/nar/compress"
	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
)

// ReceiveOptions configure Receive.
type ReceiveOptions struct {
	// Store opens the store the paths are added to; nil runs
	// `nix-daemon --stdio`, as the plain copy does, so the ssh user's
	// trust is the same either way.
	Store func(ctx context.Context) (*daemon.Conn, error)
	// CacheDir keeps the digests of store paths' files (digestcache.go);
	// "" means nbuild/digests in the user's cache directory, "none" no
	// cache.
	CacheDir string
}

// Receive is the remote end of a delta copy (see delta.go): it reads the
// sender's requests from in, answers on out, and adds each path to the
// store only through its daemon, which checks the NAR hash. It returns
// once every path is added, or the first failure, which it also tells the
// sender.
func Receive(ctx context.Context, in io.Reader, out io.Writer, opts ReceiveOptions) (err error) {
	br := bufio.NewReaderSize(in, 64<<10)
	bw := bufio.NewWriterSize(out, 64<<10)
	rv := &receiver{r: wire.NewReader(br), w: bw, cache: openDigestCache(opts.CacheDir)}
	rv.r.MaxString = 1 << 20
	defer func() {
		if err != nil {
			rv.send(wire.AppendString(wire.AppendUint64(nil, ackFail), err.Error()))
		}
	}()
	if err := rv.send(wire.AppendUint64(wire.AppendString(nil, deltaMagic), deltaVersion)); err != nil {
		return err
	}
	if err := rv.readPaths(); err != nil {
		return fmt.Errorf("reading the paths to add: %w", err)
	}
	open := opts.Store
	if open == nil {
		open = stdioDaemon
	}
	conn, err := open(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := rv.choose(ctx, conn); err != nil {
		return err
	}
	b := wire.AppendUint64(wire.AppendUint64(nil, ackPreds), uint64(len(rv.infos)))
	for _, p := range rv.preds {
		b = wire.AppendString(b, p.String())
	}
	if err := rv.send(wire.AppendString(b, "")); err != nil {
		return err
	}
	// The predecessors are indexed while the paths are assembled: path i
	// can go once its predecessor's digests have been sent (ackDigests).
	var indexTime time.Duration
	indexed := make(chan error, 1)
	go func() {
		start := time.Now()
		err := rv.indexInOrder(ctx)
		indexTime = time.Since(start)
		if err != nil {
			// The sender ends the session, which ends the assembly.
			rv.send(wire.AppendString(wire.AppendUint64(nil, ackFail), err.Error()))
		}
		indexed <- err
	}()
	zr, err := compress.NewReader(br, "zstd")
	if err != nil {
		return err
	}
	defer zr.Close()
	rv.r = wire.NewReader(zr)
	rv.r.MaxString = 1 << 20
	start := time.Now()
	err = rv.assemble(ctx, conn)
	if ierr := <-indexed; err == nil {
		err = ierr
	}
	if err != nil {
		// A cached digest may be what went wrong: index afresh next time.
		for _, pi := range rv.predIdx {
			rv.cache.drop(pi.info.Path)
		}
		return err
	}
	b = wire.AppendUint64(nil, ackDone)
	b = wire.AppendUint64(b, uint64(indexTime))
	b = wire.AppendUint64(b, uint64(time.Since(start)))
	return rv.send(wire.AppendUint64(b, uint64(rv.reused)))
}

type receiver struct {
	r       *wire.Reader
	w       *bufio.Writer
	infos   []*store.PathInfo
	cands   [][2][]store.Path // same name, same name without version
	preds   []store.Path      // zero for none
	predIdx map[store.Path]*predIndex
	hashes  map[string]string // predecessor's hash part → successor's
	cache   *digestCache
	reused  int64

	mu     sync.Mutex  // guards files, which the indexer appends to while paths are assembled
	files  []*predFile // in the order of the digests sent
	sendMu sync.Mutex  // the indexer's and the assembly's answers share the output
}

// predIndex is a predecessor being indexed: its info, and the part of the
// hash map that applies to its files (the hash parts of its references
// and its own; a file of a store path can name only those).
type predIndex struct {
	info *store.PathInfo
	m    map[string]string
	refs map[string]string // identity map of those hash parts, for scanning
}

// predFile is an indexed file of a predecessor.
type predFile struct {
	pred   *predIndex
	path   string // on disk
	rel    string // in the store path's NAR
	size   int64
	digest digest // of the rewritten contents
	raw    digest // of the contents as they are
	found  []string
}

func (rv *receiver) send(b []byte) error {
	rv.sendMu.Lock()
	defer rv.sendMu.Unlock()
	if _, err := rv.w.Write(b); err != nil {
		return err
	}
	return rv.w.Flush()
}

// maxDeltaPaths bounds the paths one request may name.
const maxDeltaPaths = 1 << 20

func (rv *receiver) readPaths() error {
	d := &wire.Decoder{R: rv.r}
	n := d.Count("paths", maxDeltaPaths)
	for range n {
		info, err := readDeltaInfo(d)
		if err != nil {
			return err
		}
		var c [2][]store.Path
		for k := range c {
			for _, s := range d.Strs() {
				p, err := store.ParsePath(s)
				if err != nil {
					return err
				}
				c[k] = append(c[k], p)
			}
		}
		if d.Err != nil {
			return d.Err
		}
		rv.infos = append(rv.infos, info)
		rv.cands = append(rv.cands, c)
	}
	return d.Err
}

// choose picks each path's predecessor: the most recently registered
// valid candidate of the first list that has one, and maps the hash part
// of each predecessor to its successor's (the first successor, when
// several share one).
func (rv *receiver) choose(ctx context.Context, conn *daemon.Conn) error {
	var all []store.Path
	for _, c := range rv.cands {
		all = append(all, c[0]...)
		all = append(all, c[1]...)
	}
	slices.SortFunc(all, store.Path.Compare)
	all = slices.Compact(all)
	infos, err := conn.QueryPathInfos(ctx, all)
	if err != nil {
		return fmt.Errorf("asking the store about predecessors: %w", err)
	}
	valid := make(map[store.Path]*store.PathInfo, len(all))
	for i, info := range infos {
		if info != nil {
			valid[all[i]] = info
		}
	}
	rv.preds = make([]store.Path, len(rv.infos))
	rv.hashes = map[string]string{}
	rv.predIdx = map[store.Path]*predIndex{}
	for i, c := range rv.cands {
		for _, list := range c {
			var best *store.PathInfo
			for _, p := range list {
				if v := valid[p]; v != nil && (best == nil || cmp.Or(
					cmp.Compare(v.RegistrationTime, best.RegistrationTime), v.Path.Compare(best.Path)) > 0) {
					best = v
				}
			}
			if best != nil {
				rv.preds[i] = best.Path
				if rv.predIdx[best.Path] == nil {
					rv.predIdx[best.Path] = &predIndex{info: best, refs: hashSet(best)}
				}
				if _, dup := rv.hashes[best.Path.HashPart()]; !dup && best.Path != rv.infos[i].Path {
					rv.hashes[best.Path.HashPart()] = rv.infos[i].Path.HashPart()
				}
				break
			}
		}
	}
	for _, pi := range rv.predIdx {
		pi.m = map[string]string{}
		for h := range pi.refs {
			if v, ok := rv.hashes[h]; ok {
				pi.m[h] = v
			}
		}
	}
	return nil
}

// hashSet is the identity map of the hash parts of info's references and
// its own.
func hashSet(info *store.PathInfo) map[string]string {
	set := map[string]string{info.Path.HashPart(): info.Path.HashPart()}
	for _, r := range info.References {
		set[r.HashPart()] = r.HashPart()
	}
	return set
}

// predOrder lists the predecessors in the order of the paths that first
// use them.
func (rv *receiver) predOrder() []*predIndex {
	var order []*predIndex
	for _, p := range rv.preds {
		if pi := rv.predIdx[p]; pi != nil && !slices.Contains(order, pi) {
			order = append(order, pi)
		}
	}
	return order
}

// index indexes every predecessor at once (indexInOrder without the
// answers).
func (rv *receiver) index(ctx context.Context) error {
	for _, pi := range rv.predOrder() {
		files, err := rv.indexPred(ctx, pi)
		if err != nil {
			return err
		}
		rv.files = append(rv.files, files...)
	}
	return nil
}

// indexInOrder indexes the predecessors path by path and answers, for
// each path, ackDigests with the digests of the files its predecessor
// adds to the index (none when it has none, or an earlier path's).
func (rv *receiver) indexInOrder(ctx context.Context) error {
	done := map[*predIndex]bool{}
	for i, p := range rv.preds {
		var files []*predFile
		if pi := rv.predIdx[p]; pi != nil && !done[pi] {
			done[pi] = true
			var err error
			if files, err = rv.indexPred(ctx, pi); err != nil {
				return err
			}
		}
		digests := make([]byte, 0, len(files)*sha256.Size)
		for _, f := range files {
			digests = append(digests, f.digest[:]...)
		}
		rv.mu.Lock()
		rv.files = append(rv.files, files...)
		rv.mu.Unlock()
		b := wire.AppendUint64(wire.AppendUint64(nil, ackDigests), uint64(i))
		if err := rv.send(wire.AppendBytes(b, digests)); err != nil {
			return err
		}
	}
	return nil
}

// indexPred finds the digest of the rewritten contents of each of pi's
// regular files of at least minRefSize bytes: from the digest cache when
// it knows the file and none of the hash parts in it change, else by
// reading it, on all cores. It then caches what it read. Unreadable files
// are left out.
func (rv *receiver) indexPred(ctx context.Context, pi *predIndex) ([]*predFile, error) {
	var files, todo []*predFile
	fresh := false
	cached := rv.cache.load(pi.info)
	root := pi.info.Path.String()
	err := walkFiles(root, func(path string, size int64) {
		if size < minRefSize {
			return
		}
		f := &predFile{pred: pi, path: path, rel: strings.TrimPrefix(strings.TrimPrefix(path, root), "/"), size: size}
		files = append(files, f)
		if c, ok := cached[f.rel]; ok && c.size == size {
			f.raw, f.found = c.digest, c.found
			if !changes(f.found, pi.m) {
				f.digest = f.raw
				return
			}
		} else {
			fresh = true
		}
		todo = append(todo, f)
	})
	if err != nil {
		return nil, fmt.Errorf("reading predecessor %s: %w", pi.info.Path, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	bad := make(map[*predFile]bool)
	var mu sync.Mutex
	for _, f := range todo {
		g.Go(func() error {
			if gctx.Err() != nil {
				return gctx.Err()
			}
			if f.read() != nil {
				mu.Lock()
				bad[f] = true
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	files = slices.DeleteFunc(files, func(f *predFile) bool { return bad[f] })
	if fresh {
		rv.cache.store(files, pi)
	}
	return files, nil
}

// changes reports whether m rewrites any of the hash parts found.
func changes(found []string, m map[string]string) bool {
	for _, h := range found {
		if _, ok := m[h]; ok {
			return true
		}
	}
	return false
}

// read hashes f as it is, noting the hash parts of its predecessor's
// references in it (unless the cache told them), and, when any of those
// change, hashes it again rewritten.
func (f *predFile) read() error {
	if f.found == nil {
		file, err := os.Open(f.path)
		if err != nil {
			return err
		}
		h, sc := sha256.New(), newScanner(f.pred.refs)
		n, err := io.Copy(io.MultiWriter(h, sc), file)
		file.Close()
		if err != nil {
			return err
		}
		if n != f.size {
			return fmt.Errorf("%s: read %d bytes, expected %d", f.path, n, f.size)
		}
		h.Sum(f.raw[:0])
		f.found = sc.Found()
		if !changes(f.found, f.pred.m) {
			f.digest = f.raw
			return nil
		}
	}
	h := sha256.New()
	n, err := f.copyRewritten(h)
	if err == nil && n != f.size {
		err = fmt.Errorf("%s: read %d bytes, expected %d", f.path, n, f.size)
	}
	h.Sum(f.digest[:0])
	return err
}

// copyRewritten writes f's contents with its predecessor's hash parts
// rewritten.
func (f *predFile) copyRewritten(w io.Writer) (int64, error) {
	file, err := os.Open(f.path)
	if err != nil {
		return 0, err
	}
	defer file.Close()
	rw := newRewriter(w, f.pred.m)
	n, err := io.Copy(rw, file)
	if err == nil {
		err = rw.Close()
	}
	return n, err
}

// walkFiles calls fn for each regular file under root (root itself if it
// is one), never following symlinks.
func walkFiles(root string, fn func(path string, size int64)) error {
	fi, err := os.Lstat(root)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode().IsRegular():
		fn(root, fi.Size())
	case fi.IsDir():
		ents, err := os.ReadDir(root)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := walkFiles(root+"/"+e.Name(), fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// assemble reads the records of step 4, builds each path's NAR and adds
// it through conn, acknowledging each.
func (rv *receiver) assemble(ctx context.Context, conn *daemon.Conn) error {
	next := 0
	for {
		tag, err := rv.r.ReadUint64()
		if err != nil {
			return fmt.Errorf("reading the copy stream: %w", err)
		}
		switch tag {
		case tagDone:
			if next != len(rv.infos) {
				return fmt.Errorf("the sender stopped after %d of %d paths", next, len(rv.infos))
			}
			return nil
		case tagPath:
			i, err := rv.r.ReadUint64()
			if err != nil {
				return err
			}
			if i != uint64(next) {
				return fmt.Errorf("path %d sent out of order (expected %d)", i, next)
			}
			if err := rv.addPath(ctx, conn, rv.infos[next]); err != nil {
				return fmt.Errorf("adding %s: %w", rv.infos[next].Path, err)
			}
			if err := rv.send(wire.AppendUint64(wire.AppendUint64(nil, ackPath), i)); err != nil {
				return err
			}
			next++
		default:
			return fmt.Errorf("unknown record %d in the copy stream", tag)
		}
	}
}

// addPath streams one path's NAR, made from its records, into the daemon.
func (rv *receiver) addPath(ctx context.Context, conn *daemon.Conn, info *store.PathInfo) error {
	pr, pw := io.Pipe()
	added := make(chan error, 1)
	go func() {
		err := conn.AddToStoreNarFlags(ctx, info, pr, daemon.AddFlags{NoCheckSigs: true})
		pr.CloseWithError(cmp.Or(err, errNarUnread))
		added <- err
	}()
	files, err := rv.writeNar(pw, info)
	pw.CloseWithError(err)
	addErr := <-added
	if addErr != nil {
		return addErr // the daemon's refusal says more than a broken pipe
	}
	if err == nil {
		// The next update's predecessor is indexed already.
		rv.cache.put(info, files)
	}
	return err
}

// errNarUnread ends a NAR the daemon stopped reading.
var errNarUnread = errors.New("the daemon stopped reading the NAR")

// writeNar writes the NAR of info's path from its records, and returns
// the digests of its files of at least minRefSize bytes, for the cache:
// a reused file's is the digest the sender matched, the others' are
// computed as they pass.
func (rv *receiver) writeNar(w io.Writer, info *store.PathInfo) ([]cachedFile, error) {
	nw := nar.NewWriter(w)
	d := &wire.Decoder{R: rv.r}
	var files []cachedFile
	var set map[string]string
	for {
		tag := d.U64()
		if d.Err != nil {
			return nil, d.Err
		}
		if tag == tagEnd {
			return files, nw.Close()
		}
		h := nar.Header{Path: d.Str()}
		switch tag {
		case tagDir:
			h.Type = nar.TypeDirectory
		case tagLink:
			h.Type = nar.TypeSymlink
			h.LinkTarget = d.Str()
		case tagFile, tagRef, tagPatch:
			h.Type = nar.TypeRegular
			h.Executable = d.Bool()
			h.Size = int64(d.U64())
		default:
			return nil, fmt.Errorf("unknown record %d in a NAR", tag)
		}
		if d.Err != nil {
			return nil, d.Err
		}
		if h.Size < 0 {
			return nil, fmt.Errorf("%s: size out of range", h.Path)
		}
		if err := nw.WriteHeader(&h); err != nil {
			return nil, err
		}
		switch tag {
		case tagFile:
			var dst io.Writer = nw
			var hw hash.Hash
			var sc *scanner
			if h.Size >= minRefSize {
				if set == nil {
					set = hashSet(info)
				}
				hw, sc = sha256.New(), newScanner(set)
				dst = io.MultiWriter(nw, hw, sc)
			}
			if _, err := io.CopyN(dst, rv.r.Underlying(), h.Size); err != nil {
				return nil, fmt.Errorf("%s: %w", h.Path, unexpectedEOF(err))
			}
			if err := rv.r.ReadPadding(uint64(h.Size)); err != nil {
				return nil, err
			}
			if hw != nil {
				c := cachedFile{rel: h.Path, size: h.Size, found: sc.Found()}
				hw.Sum(c.digest[:0])
				files = append(files, c)
			}
		case tagPatch:
			out, err := rv.readPatch(&h)
			if err != nil {
				return nil, err
			}
			if _, err := nw.Write(out); err != nil {
				return nil, err
			}
			if set == nil {
				set = hashSet(info)
			}
			sc := newScanner(set)
			sc.Write(out)
			c := cachedFile{rel: h.Path, size: h.Size, digest: sha256.Sum256(out), found: sc.Found()}
			files = append(files, c)
		case tagRef:
			f, err := rv.writeRef(nw, &h)
			if err != nil {
				return nil, err
			}
			// Rewriting turned the hash parts found into their successors'.
			c := cachedFile{rel: h.Path, size: h.Size, digest: f.digest}
			for _, x := range f.found {
				c.found = append(c.found, cmp.Or(f.pred.m[x], x))
			}
			slices.Sort(c.found)
			files = append(files, c)
		}
	}
}

// writeRef writes the contents of the indexed file the sender named by
// its number in the digests sent. They are not hashed again: the daemon
// checks the whole NAR's hash.
func (rv *receiver) writeRef(w io.Writer, h *nar.Header) (*predFile, error) {
	i, err := rv.r.ReadUint64()
	if err != nil {
		return nil, err
	}
	f := rv.file(i)
	if f == nil || f.size != h.Size {
		return nil, fmt.Errorf("%s: no file %d of that size here", h.Path, i)
	}
	n, err := f.copyRewritten(w)
	if err != nil {
		return nil, err
	}
	if n != h.Size {
		return nil, fmt.Errorf("%s: %s changed since it was indexed", h.Path, f.path)
	}
	rv.reused += n
	return f, nil
}

// file returns indexed file number i, nil if there is none (yet).
func (rv *receiver) file(i uint64) *predFile {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if i >= uint64(len(rv.files)) {
		return nil
	}
	return rv.files[i]
}

// readPatch reads a patch record's digest number and frame and decodes
// it with the indexed file of that number, rewritten, as the dictionary.
func (rv *receiver) readPatch(h *nar.Header) ([]byte, error) {
	i, err := rv.r.ReadUint64()
	if err != nil {
		return nil, err
	}
	frame, err := rv.r.ReadBytesLimit(maxPatchSize, "patch")
	if err != nil {
		return nil, err
	}
	f := rv.file(i)
	if f == nil || h.Size > maxPatchSize {
		return nil, fmt.Errorf("%s: no file %d here to patch", h.Path, i)
	}
	var dict bytes.Buffer
	if _, err := f.copyRewritten(&dict); err != nil {
		return nil, err
	}
	out, err := unpatch(frame, dict.Bytes(), h.Size)
	if err != nil {
		return nil, fmt.Errorf("%s: patch: %w", h.Path, err)
	}
	return out, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// stdioDaemon runs `nix-daemon --stdio` and speaks the worker protocol
// over its standard input and output.
func stdioDaemon(ctx context.Context) (*daemon.Conn, error) {
	cmd := exec.Command("nix-daemon", "--stdio")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting nix-daemon --stdio: %w", err)
	}
	return daemon.NewConn(ctx, &cmdConn{cmd: cmd, stdin: stdin, stdout: stdout}, daemon.Options{SkipSetOptions: true})
}

// cmdConn is a command's standard output and input as one connection.
type cmdConn struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.Reader
}

func (c *cmdConn) Read(p []byte) (int, error)  { return c.stdout.Read(p) }
func (c *cmdConn) Write(p []byte) (int, error) { return c.stdin.Write(p) }

func (c *cmdConn) Close() error {
	c.stdin.Close()
	return c.cmd.Wait()
}

// ReceiveMain runs ReceiveCommand's command line (args are those after
// the command's name) on the given streams and returns the exit status:
// with --hello it prints ReceiveHello, else it runs Receive. nbuild's
// main calls it, and so can any program that is to serve as the remote
// nbuild (a test binary, for one).
func ReceiveMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 1 && args[0] == "--hello":
		fmt.Fprintln(stdout, ReceiveHello())
		return 0
	case len(args) > 0:
		fmt.Fprintf(stderr, "nbuild %s: unexpected arguments %q\n", ReceiveCommand, args)
		return 2
	}
	if err := Receive(ctx, stdin, stdout, ReceiveOptions{}); err != nil {
		fmt.Fprintf(stderr, "nbuild %s: %v\n", ReceiveCommand, err)
		return 1
	}
	return 0
}
