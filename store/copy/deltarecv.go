package copy

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
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
}

// Receive is the remote end of a delta copy (see delta.go): it reads the
// sender's requests from in, answers on out, and adds each path to the
// store only through its daemon, which checks the NAR hash. It returns
// once every path is added, or the first failure, which it also tells the
// sender.
func Receive(ctx context.Context, in io.Reader, out io.Writer, opts ReceiveOptions) (err error) {
	br := bufio.NewReaderSize(in, 64<<10)
	bw := bufio.NewWriterSize(out, 64<<10)
	rv := &receiver{r: wire.NewReader(br), w: bw}
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
	start := time.Now()
	if err := rv.choose(ctx, conn); err != nil {
		return err
	}
	if err := rv.index(ctx); err != nil {
		return err
	}
	indexTime := time.Since(start)
	b := wire.AppendUint64(wire.AppendUint64(nil, ackPreds), uint64(len(rv.infos)))
	for _, p := range rv.preds {
		b = wire.AppendString(b, p.String())
	}
	digests := make([]byte, 0, len(rv.files)*sha256.Size)
	for d := range rv.files {
		digests = append(digests, d[:]...)
	}
	if err := rv.send(wire.AppendBytes(b, digests)); err != nil {
		return err
	}
	zr, err := compress.NewReader(br, "zstd")
	if err != nil {
		return err
	}
	defer zr.Close()
	rv.r = wire.NewReader(zr)
	rv.r.MaxString = 1 << 20
	start = time.Now()
	if err := rv.assemble(ctx, conn); err != nil {
		return err
	}
	b = wire.AppendUint64(nil, ackDone)
	b = wire.AppendUint64(b, uint64(indexTime))
	b = wire.AppendUint64(b, uint64(time.Since(start)))
	return rv.send(wire.AppendUint64(b, uint64(rv.reused)))
}

type receiver struct {
	r      *wire.Reader
	w      *bufio.Writer
	infos  []*store.PathInfo
	cands  [][2][]store.Path // same name, same name without version
	preds  []store.Path      // zero for none
	hashes map[string]string // predecessor's hash part → successor's
	files  map[digest]predFile
	reused int64
}

// predFile is an indexed file of a predecessor.
type predFile struct {
	path string
	size int64
}

func (rv *receiver) send(b []byte) error {
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
				if _, dup := rv.hashes[best.Path.HashPart()]; !dup && best.Path != rv.infos[i].Path {
					rv.hashes[best.Path.HashPart()] = rv.infos[i].Path.HashPart()
				}
				break
			}
		}
	}
	return nil
}

// index hashes the rewritten contents of every predecessor's regular
// files of at least minRefSize bytes, on all cores.
func (rv *receiver) index(ctx context.Context) error {
	var todo []predFile
	seen := map[store.Path]bool{}
	for _, p := range rv.preds {
		if p.IsZero() || seen[p] {
			continue
		}
		seen[p] = true
		err := walkFiles(p.String(), func(path string, size int64) {
			if size >= minRefSize {
				todo = append(todo, predFile{path, size})
			}
		})
		if err != nil {
			return fmt.Errorf("reading predecessor %s: %w", p, err)
		}
	}
	rv.files = make(map[digest]predFile, len(todo))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for _, f := range todo {
		g.Go(func() error {
			if gctx.Err() != nil {
				return gctx.Err()
			}
			d, err := rv.digest(f)
			if err != nil {
				// An unreadable file is simply not offered.
				return nil
			}
			mu.Lock()
			rv.files[d] = f
			mu.Unlock()
			return nil
		})
	}
	return g.Wait()
}

// digest is the SHA-256 of f's contents with hash parts rewritten.
func (rv *receiver) digest(f predFile) (digest, error) {
	h := sha256.New()
	n, err := rv.copyRewritten(h, f)
	if err == nil && n != f.size {
		err = fmt.Errorf("%s: read %d bytes, expected %d", f.path, n, f.size)
	}
	var d digest
	h.Sum(d[:0])
	return d, err
}

func (rv *receiver) copyRewritten(w io.Writer, f predFile) (int64, error) {
	file, err := os.Open(f.path)
	if err != nil {
		return 0, err
	}
	defer file.Close()
	rw := newRewriter(w, rv.hashes)
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
	err := rv.writeNar(pw)
	pw.CloseWithError(err)
	addErr := <-added
	if addErr != nil {
		return addErr // the daemon's refusal says more than a broken pipe
	}
	return err
}

// errNarUnread ends a NAR the daemon stopped reading.
var errNarUnread = errors.New("the daemon stopped reading the NAR")

func (rv *receiver) writeNar(w io.Writer) error {
	nw := nar.NewWriter(w)
	d := &wire.Decoder{R: rv.r}
	for {
		tag := d.U64()
		if d.Err != nil {
			return d.Err
		}
		if tag == tagEnd {
			return nw.Close()
		}
		h := nar.Header{Path: d.Str()}
		switch tag {
		case tagDir:
			h.Type = nar.TypeDirectory
		case tagLink:
			h.Type = nar.TypeSymlink
			h.LinkTarget = d.Str()
		case tagFile, tagRef:
			h.Type = nar.TypeRegular
			h.Executable = d.Bool()
			h.Size = int64(d.U64())
		default:
			return fmt.Errorf("unknown record %d in a NAR", tag)
		}
		if d.Err != nil {
			return d.Err
		}
		if h.Size < 0 {
			return fmt.Errorf("%s: size out of range", h.Path)
		}
		if err := nw.WriteHeader(&h); err != nil {
			return err
		}
		switch tag {
		case tagFile:
			if _, err := io.CopyN(nw, rv.r.Underlying(), h.Size); err != nil {
				return fmt.Errorf("%s: %w", h.Path, unexpectedEOF(err))
			}
			if err := rv.r.ReadPadding(uint64(h.Size)); err != nil {
				return err
			}
		case tagRef:
			if err := rv.writeRef(nw, &h); err != nil {
				return err
			}
		}
	}
}

// writeRef writes the contents of the indexed file whose rewritten digest
// the sender named, checking the digest again as it goes.
func (rv *receiver) writeRef(w io.Writer, h *nar.Header) error {
	b, err := rv.r.ReadBytesLimit(sha256.Size, "digest")
	if err != nil {
		return err
	}
	var d digest
	if len(b) != len(d) {
		return fmt.Errorf("%s: digest of %d bytes", h.Path, len(b))
	}
	copy(d[:], b)
	f, ok := rv.files[d]
	if !ok || f.size != h.Size {
		return fmt.Errorf("%s: no file of that digest and size here", h.Path)
	}
	hw := sha256.New()
	n, err := rv.copyRewritten(io.MultiWriter(w, hw), f)
	if err != nil {
		return err
	}
	if n != h.Size || !bytes.Equal(hw.Sum(nil), d[:]) {
		return fmt.Errorf("%s: %s changed since it was indexed", h.Path, f.path)
	}
	rv.reused += n
	return nil
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
