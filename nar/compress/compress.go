// Package compress compresses and decompresses NARs for binary caches and
// copies, behind one writer/reader pair: "none", "zstd" (klauspost) and
// "xz" (ulikunitz).
//
// Vocabulary:
//
//   - chunk: Options.ChunkSize bytes of input, compressed independently into
//     one complete zstd frame or xz stream. The output is the chunks'
//     frames/streams concatenated in input order, which `zstd -d`, `xz -d`
//     and Nix 2.8 read as one stream (2.8 src/libutil/compression.cc decodes
//     concatenated frames and streams). The bytes do
//     not depend on Concurrency.
//   - in flight: input bytes accepted but not yet written out compressed;
//     bounded by Options.MaxInFlightBytes.
//
// A Writer with Concurrency > 1 runs its workers and one ordered flusher in
// an errgroup bound to Options.Context; they start only once a second
// chunk is due (a small NAR is compressed in Close on the caller's
// goroutine) and have all exited when Close or a failed Write returns, or
// soon after the context is cancelled.
package compress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
	"golang.org/x/sync/errgroup"
)

// ErrUnknownAlgorithm is returned for a compression name other than
// "none", "zstd" and "xz".
var ErrUnknownAlgorithm = errors.New("compress: unknown compression algorithm")

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("compress: write after close")

// Options configure a Writer; the zero value means the defaults noted.
type Options struct {
	// Level is the algorithm's level: zstd 1-22 (default 3, mapped onto
	// klauspost's four levels), xz 0-9 (default 6). For xz the level
	// only picks the dictionary size of xz's preset (capped at the
	// chunk size): the match finder is always ulikunitz's greedy
	// HashTable4, so the ratio is that of about `xz -1` at any level.
	Level int
	// Concurrency is the number of chunks compressed at once; 0 means
	// GOMAXPROCS, 1 compresses on the caller's goroutine.
	Concurrency int
	// ChunkSize is the input size of each independent frame or stream;
	// 0 means 4 MiB for zstd and for xz the larger of 16 MiB and the
	// level's dictionary (8 MiB at level 6).
	ChunkSize int
	// MaxInFlightBytes bounds the input bytes buffered in the pipeline;
	// 0 means 2 × Concurrency × ChunkSize. At least Concurrency+1 chunks.
	MaxInFlightBytes int64
	// Context cancels compression; nil means context.Background().
	Context context.Context
	// Adaptive (zstd only) stores a chunk instead of compressing it when
	// compressing cannot pay: when 24 KiB sampled from it shrink by less
	// than 5 %, or when the underlying writer takes bytes faster than the
	// workers compress them and it is waiting for the next chunk. A stored chunk
	// is a zstd frame of raw blocks: any zstd decoder reads the stream,
	// at the cost of a memory copy. A writer that pushes back (a slow
	// link) gets every compressible chunk compressed.
	Adaptive bool
}

// Ext returns the file extension Nix gives a NAR compressed with algo
// (".zst", ".xz", "" for none), as in a binary cache's nar/ directory.
func Ext(algo string) string {
	switch algo {
	case "zstd":
		return ".zst"
	case "xz":
		return ".xz"
	}
	return ""
}

// xzDictCap is the dictionary size of xz's presets 0-9.
var xzDictCap = [10]int{256 << 10, 1 << 20, 2 << 20, 4 << 20, 4 << 20, 8 << 20, 8 << 20, 16 << 20, 32 << 20, 64 << 20}

// xzMinChunk is the smallest default xz chunk. Each chunk restarts with
// an empty dictionary: on a NAR of GOROOT at level 6 (8 MiB dictionary),
// 8 MiB chunks compress to 0.244 and 16 MiB ones to 0.239 (xz -6: 0.183).
// Larger chunks leave a core idle on NARs of a few chunks and hold more
// memory in flight.
const xzMinChunk = 16 << 20

// codec compresses one chunk into a complete frame/stream appended to dst.
type codec interface {
	appendCompressed(ctx context.Context, dst, src []byte) ([]byte, error)
}

type noneCodec struct{}

func (noneCodec) appendCompressed(_ context.Context, dst, src []byte) ([]byte, error) {
	return append(dst, src...), nil
}

type zstdCodec struct{ enc *zstd.Encoder }

func (c zstdCodec) appendCompressed(_ context.Context, dst, src []byte) ([]byte, error) {
	return c.enc.EncodeAll(src, dst), nil
}

type xzCodec struct{ cfg xz.WriterConfig }

func (c xzCodec) appendCompressed(ctx context.Context, dst, src []byte) ([]byte, error) {
	buf := ctxBuffer{ctx: ctx, b: bytes.NewBuffer(dst)}
	zw, err := c.cfg.NewWriter(&buf)
	if err != nil {
		return dst, err
	}
	if _, err := zw.Write(src); err != nil {
		return dst, err
	}
	if err := zw.Close(); err != nil {
		return dst, err
	}
	return buf.b.Bytes(), nil
}

// ctxBuffer fails writes once ctx is done, so a cancelled xz compression
// stops at its next output block rather than finishing the chunk.
type ctxBuffer struct {
	ctx context.Context
	b   *bytes.Buffer
}

func (c *ctxBuffer) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.b.Write(p)
}

// job is one chunk: its input, its compressed output, and a channel closed
// when the output is ready. Jobs are recycled, so their buffers are too.
type job struct {
	in, out []byte
	err     error
	done    chan struct{}
	stored  bool // out is a frame of raw blocks (Options.Adaptive)
}

// Writer compresses what is written to it into an underlying writer. Close
// flushes and stops the pipeline but does not close the underlying
// writer. A Writer may be reused for another stream with Reset after
// Close, keeping its encoder and buffers (cheap for many small NARs).
type Writer struct {
	w     io.Writer
	codec codec
	opts  Options
	ctx   context.Context

	cur       *job // chunk being filled
	free      chan *job
	allocated int // jobs allocated so far, ≤ cap(free)
	err       error
	closed    bool
	emitted   bool // a chunk of this stream went to compression

	// The pipeline, once started.
	started bool
	g       *errgroup.Group
	gctx    context.Context
	jobs    chan *job // work queue
	order   chan *job // result queue, in input order

	adapt *adaptive // Options.Adaptive's measurements; nil when off
}

// NewWriter returns a Writer compressing with algo ("none", "zstd", "xz")
// into w.
func NewWriter(w io.Writer, algo string, opts Options) (*Writer, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = runtime.GOMAXPROCS(0)
	}
	if opts.Context == nil {
		opts.Context = context.Background()
	}
	if opts.Adaptive && algo != "zstd" {
		return nil, errors.New("compress: Adaptive needs zstd")
	}
	zw := &Writer{w: w, opts: opts, ctx: opts.Context}
	switch algo {
	case "none", "":
		zw.codec = noneCodec{}
		if opts.ChunkSize <= 0 {
			opts.ChunkSize = 1 << 20
		}
	case "zstd":
		level := opts.Level
		if level == 0 {
			level = 3
		}
		if opts.ChunkSize <= 0 {
			opts.ChunkSize = 4 << 20
		}
		enc, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
			zstd.WithEncoderConcurrency(opts.Concurrency),
			zstd.WithEncoderCRC(true))
		if err != nil {
			return nil, fmt.Errorf("compress: zstd: %w", err)
		}
		zw.codec = zstdCodec{enc}
		if opts.Adaptive {
			zw.adapt = &adaptive{enc: enc}
		}
	case "xz":
		level := opts.Level
		if level == 0 {
			level = 6
		}
		if level < 0 || level > 9 {
			return nil, fmt.Errorf("compress: xz level %d not in 0-9", level)
		}
		dict := xzDictCap[level]
		if opts.ChunkSize <= 0 {
			opts.ChunkSize = max(xzMinChunk, dict)
		}
		// Always HashTable4: ulikunitz's BinaryTree matcher is an
		// unbalanced search tree that degenerates into a list on
		// repetitive input (2 MiB of a Go NAR took 586 s, 91% of it
		// in binTree.add); see bench/NOTES-nar.md.
		cfg := xz.WriterConfig{DictCap: min(dict, max(opts.ChunkSize, 4096)), CheckSum: xz.CRC64, Matcher: lzma.HashTable4}
		if err := cfg.Verify(); err != nil {
			return nil, fmt.Errorf("compress: xz: %w", err)
		}
		zw.codec = xzCodec{cfg}
	default:
		return nil, fmt.Errorf("%w %q", ErrUnknownAlgorithm, algo)
	}
	nJobs := int64(2 * opts.Concurrency)
	if opts.MaxInFlightBytes > 0 {
		nJobs = opts.MaxInFlightBytes / int64(opts.ChunkSize)
	}
	nJobs = max(nJobs, int64(opts.Concurrency+1))
	zw.opts = opts
	zw.free = make(chan *job, nJobs)
	return zw, nil
}

// Reset makes a closed Writer compress a new stream into w.
func (zw *Writer) Reset(w io.Writer) {
	if zw.err != nil { // jobs may have been dropped with the pipeline
		zw.free = make(chan *job, cap(zw.free))
		zw.allocated = 0
	}
	zw.cur = nil
	zw.w = w
	zw.err = nil
	zw.closed = false
	zw.emitted = false
	zw.started = false
	zw.g, zw.gctx, zw.jobs, zw.order = nil, nil, nil, nil
}

// acquire returns an empty job, waiting for the flusher to return one when
// MaxInFlightBytes are in flight.
func (zw *Writer) acquire() (*job, error) {
	select {
	case j := <-zw.free:
		j.in, j.out, j.err = j.in[:0], j.out[:0], nil
		return j, nil
	default:
	}
	if zw.allocated < cap(zw.free) {
		zw.allocated++
		return &job{in: make([]byte, 0, zw.opts.ChunkSize)}, nil
	}
	done := zw.ctx.Done()
	if zw.started {
		done = zw.gctx.Done()
	}
	select {
	case j := <-zw.free:
		j.in, j.out, j.err = j.in[:0], j.out[:0], nil
		return j, nil
	case <-done:
		return nil, zw.fail(context.Cause(zw.ctxOrG()))
	}
}

func (zw *Writer) ctxOrG() context.Context {
	if zw.started {
		return zw.gctx
	}
	return zw.ctx
}

// Write compresses p (buffering up to a chunk).
func (zw *Writer) Write(p []byte) (int, error) {
	if zw.err != nil {
		return 0, zw.err
	}
	if zw.closed {
		return 0, ErrClosed
	}
	if err := zw.ctx.Err(); err != nil {
		return 0, zw.fail(err)
	}
	n := 0
	for len(p) > 0 {
		if zw.cur == nil {
			j, err := zw.acquire()
			if err != nil {
				return n, err
			}
			zw.cur = j
		}
		k := min(len(p), zw.opts.ChunkSize-len(zw.cur.in))
		zw.cur.in = append(zw.cur.in, p[:k]...)
		p, n = p[k:], n+k
		if len(zw.cur.in) == zw.opts.ChunkSize {
			j := zw.cur
			zw.cur = nil
			if err := zw.submit(j); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// submit hands a full chunk to the pipeline, or compresses it at once when
// Concurrency is 1.
func (zw *Writer) submit(j *job) error {
	zw.emitted = true
	if zw.opts.Concurrency == 1 {
		return zw.compressNow(j)
	}
	if !zw.started {
		zw.start()
	}
	// The result queue is filled before the work queue, so the flusher
	// sees jobs in input order whichever worker finishes first.
	j.done = make(chan struct{})
	j.stored = false
	if zw.adapt != nil && zw.adapt.store(j.in, zw.opts.Concurrency) {
		j.out, j.stored = appendStoredFrame(j.out[:0], j.in), true
		close(j.done)
	}
	select {
	case zw.order <- j:
	case <-zw.gctx.Done():
		return zw.fail(zw.stop())
	}
	if j.stored {
		return nil
	}
	select {
	case zw.jobs <- j:
	case <-zw.gctx.Done():
		return zw.fail(zw.stop())
	}
	return nil
}

func (zw *Writer) compressNow(j *job) error {
	zw.emitted = true
	var err error
	if zw.adapt != nil && zw.adapt.store(j.in, 1) {
		j.out, j.stored = appendStoredFrame(j.out[:0], j.in), true
	} else {
		j.out, err = zw.compress(zw.ctx, j)
		j.stored = false
	}
	if err == nil {
		err = zw.writeOut(j)
	}
	zw.free <- j
	if err != nil {
		return zw.fail(err)
	}
	return nil
}

func (zw *Writer) start() {
	zw.started = true
	zw.g, zw.gctx = errgroup.WithContext(zw.ctx)
	zw.jobs = make(chan *job)
	zw.order = make(chan *job, cap(zw.free))
	for range zw.opts.Concurrency {
		zw.g.Go(zw.work)
	}
	zw.g.Go(zw.flush)
}

func (zw *Writer) work() error {
	for {
		select {
		case j, ok := <-zw.jobs:
			if !ok {
				return nil
			}
			out, err := zw.compress(zw.gctx, j)
			// Once done is closed the flusher owns j and may recycle it:
			// read nothing of j after that.
			j.out, j.err = out, err
			close(j.done)
			if err != nil {
				return err
			}
		case <-zw.gctx.Done():
			return zw.gctx.Err()
		}
	}
}

// flush writes compressed chunks in input order and recycles their jobs.
func (zw *Writer) flush() error {
	for {
		var j *job
		select {
		case next, ok := <-zw.order:
			if !ok {
				return nil
			}
			j = next
		case <-zw.gctx.Done():
			return zw.gctx.Err()
		}
		select {
		case <-j.done:
		default:
			// The writer waits for the compressor.
			if zw.adapt != nil {
				zw.adapt.starved.Store(true)
			}
			select {
			case <-j.done:
			case <-zw.gctx.Done():
				return zw.gctx.Err()
			}
			if zw.adapt != nil {
				zw.adapt.starved.Store(false)
			}
		}
		if j.err != nil {
			return j.err
		}
		if err := zw.writeOut(j); err != nil {
			return err
		}
		zw.free <- j // never blocks: free holds every job
	}
}

// compress compresses j's input into its output buffer, timing it for
// Options.Adaptive.
func (zw *Writer) compress(ctx context.Context, j *job) ([]byte, error) {
	if zw.adapt == nil {
		return zw.codec.appendCompressed(ctx, j.out[:0], j.in)
	}
	start := time.Now()
	out, err := zw.codec.appendCompressed(ctx, j.out[:0], j.in)
	zw.adapt.compressed(len(j.in), len(out), time.Since(start))
	return out, err
}

// writeOut writes a finished chunk to the underlying writer, timing it for
// Options.Adaptive.
func (zw *Writer) writeOut(j *job) error {
	if zw.adapt == nil {
		_, err := zw.w.Write(j.out)
		return err
	}
	start := time.Now()
	_, err := zw.w.Write(j.out)
	zw.adapt.written(len(j.out), j.stored, time.Since(start))
	return err
}

// Stored returns how many chunks Options.Adaptive stored rather than
// compressed, of how many written so far.
func (zw *Writer) Stored() (stored, chunks int) {
	if zw.adapt == nil {
		return 0, 0
	}
	zw.adapt.mu.Lock()
	defer zw.adapt.mu.Unlock()
	return zw.adapt.stored, zw.adapt.decided
}

// stop closes the queues and waits for the pipeline's goroutines.
func (zw *Writer) stop() error {
	if !zw.started {
		return nil
	}
	close(zw.jobs)
	close(zw.order)
	err := zw.g.Wait()
	zw.started = false
	return err
}

func (zw *Writer) fail(err error) error {
	if zw.err == nil {
		if err == nil {
			err = context.Canceled
		}
		zw.err = err
		zw.stop()
	}
	return zw.err
}

// Close compresses what is buffered, writes it, and waits for the pipeline
// to drain. An empty stream still produces a valid (empty) frame/stream.
func (zw *Writer) Close() error {
	if zw.closed {
		return zw.err
	}
	zw.closed = true
	if zw.err != nil {
		return zw.err
	}
	j := zw.cur
	zw.cur = nil
	if j == nil && !zw.emitted {
		var err error
		if j, err = zw.acquire(); err != nil {
			return err
		}
	}
	if j != nil {
		if zw.started {
			if err := zw.submit(j); err != nil {
				return err
			}
		} else if err := zw.compressNow(j); err != nil {
			return err
		}
	}
	if err := zw.stop(); err != nil {
		return zw.fail(err)
	}
	if err := zw.ctx.Err(); err != nil {
		return zw.fail(err)
	}
	return nil
}

// NewReader returns a reader of the decompressed stream r compressed with
// algo. Concatenated frames/streams are read as one. The caller must
// Close it (releasing the zstd decoder); Close does not close r. Decoding
// runs on the caller's goroutine.
func NewReader(r io.Reader, algo string) (io.ReadCloser, error) {
	switch algo {
	case "none", "":
		return io.NopCloser(r), nil
	case "zstd":
		dec, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<30))
		if err != nil {
			return nil, fmt.Errorf("compress: zstd: %w", err)
		}
		return zstdReader{dec}, nil
	case "xz":
		tr := &tailReader{r: r}
		xr, err := xz.NewReader(tr)
		if err != nil {
			return nil, fmt.Errorf("compress: xz: %w", err)
		}
		return io.NopCloser(&xzReader{xr: xr, tail: tr}), nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownAlgorithm, algo)
}

// xzReader turns an end of input inside a stream into
// io.ErrUnexpectedEOF. ulikunitz's reader takes input that ends in a
// block header for the end of the stream, so a stream cut there read as
// complete (and a cut right after the stream header as empty). A complete
// stream ends in its footer's magic "YZ", then only stream padding (zero
// bytes).
type xzReader struct {
	xr   io.Reader
	tail *tailReader
}

func (x *xzReader) Read(p []byte) (int, error) {
	n, err := x.xr.Read(p)
	if err == io.EOF && !x.tail.endsInFooter() {
		err = fmt.Errorf("compress: xz: %w", io.ErrUnexpectedEOF)
	}
	return n, err
}

// tailReader remembers the last two non-zero bytes read through it.
type tailReader struct {
	r    io.Reader
	last [2]byte
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	// Only the end of p matters: find its last two non-zero bytes.
	var got [2]byte
	k := 0
	for i := n - 1; i >= 0 && k < 2; i-- {
		if p[i] != 0 {
			got[1-k] = p[i]
			k++
		}
	}
	switch k {
	case 2:
		t.last = got
	case 1:
		t.last = [2]byte{t.last[1], got[1]}
	}
	return n, err
}

func (t *tailReader) endsInFooter() bool { return t.last == [2]byte{'Y', 'Z'} }

type zstdReader struct{ dec *zstd.Decoder }

func (z zstdReader) Read(p []byte) (int, error) { return z.dec.Read(p) }
func (z zstdReader) Close() error               { z.dec.Close(); return nil }
