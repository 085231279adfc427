package serve

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
)

// DumpStorePath streams the NAR of p from the server to w and returns its
// length. The NAR is validated as it passes (nar.Copy). If p is not valid
// the server quits; the client is broken afterwards.
func (c *Client) DumpStorePath(ctx context.Context, p store.Path, w io.Writer) (int64, error) {
	var n int64
	err := c.do(ctx, "DumpStorePath", func() error {
		b := wire.AppendUint64(c.buf[:0], cmdDumpStorePath)
		if err := c.send(wire.AppendString(b, p.String())); err != nil {
			return err
		}
		var err error
		n, err = nar.Copy(w, c.br)
		return err
	})
	return n, err
}

// dumpWindow is how many DumpStorePath requests DumpStorePaths keeps
// ahead of the NAR it is reading. A request is about 100 bytes, so the
// window always fits in the pipe to the server and writing never blocks,
// which lets one goroutine both write requests and read NARs.
const dumpWindow = 32

// DumpStorePaths streams the NARs of paths in order, each into the writer
// dst returns for it, pipelining the requests so there is no round trip
// per path. If a path is not valid the server quits: the paths before it
// were delivered completely, the error carries the server's message and
// the client is broken afterwards.
func (c *Client) DumpStorePaths(ctx context.Context, paths []store.Path, dst func(p store.Path) (io.Writer, error)) error {
	return c.do(ctx, "DumpStorePath", func() error {
		sent := 0
		sendUpTo := func(n int) error {
			b := c.buf[:0]
			for ; sent < n && sent < len(paths); sent++ {
				b = wire.AppendUint64(b, cmdDumpStorePath)
				b = wire.AppendString(b, paths[sent].String())
			}
			return c.send(b)
		}
		if err := sendUpTo(dumpWindow); err != nil {
			return err
		}
		for i, p := range paths {
			w, err := dst(p)
			if err != nil {
				return err
			}
			if _, err := nar.Copy(w, c.br); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if err := sendUpTo(i + 1 + dumpWindow); err != nil {
				return err
			}
		}
		return nil
	})
}

// NarFromPath is DumpStorePath for the store.NarReader interface: an
// invalid path gives an error wrapping store.ErrNotValid (recognised from
// the server's last words, since the protocol has no error reply).
func (c *Client) NarFromPath(ctx context.Context, p store.Path, w io.Writer) error {
	_, err := c.DumpStorePath(ctx, p, w)
	var oe *OpError
	if errors.As(err, &oe) && strings.Contains(oe.Stderr, "is not valid") {
		return fmt.Errorf("%w: %w", store.ErrNotValid, err)
	}
	return err
}

// NarSource is one path to upload: its metadata and a function that writes
// its NAR.
type NarSource struct {
	Info *store.PathInfo
	// WriteNAR writes the path's NAR, exactly Info.NarSize bytes, to w.
	WriteNAR func(w io.Writer) error
}

// AddOptions tune AddToStoreNars.
type AddOptions struct {
	// Acked, when set, is called once the server has registered each
	// path, in order, from a goroutine of AddToStoreNars (it must not
	// call back into the Client).
	Acked func(*store.PathInfo)
}

// SourceError is a failure of a NarSource's WriteNAR (a local problem,
// not the server's).
type SourceError struct {
	Path store.Path
	Err  error
}

func (e *SourceError) Error() string {
	return fmt.Sprintf("serve: reading NAR of %s: %v", e.Path, e.Err)
}
func (e *SourceError) Unwrap() error { return e.Err }

// AddToStoreNar adds one path from its NAR (≥2.5 AddToStoreNar; an older
// server gets an ImportPaths stream). The server verifies the NAR's hash
// and size and, being --write, does not check signatures.
func (c *Client) AddToStoreNar(ctx context.Context, info *store.PathInfo, r io.Reader) error {
	src := NarSource{Info: info, WriteNAR: func(w io.Writer) error {
		_, err := io.Copy(w, r)
		return err
	}}
	return c.AddToStoreNars(ctx, []NarSource{src}, AddOptions{})
}

// AddToStoreNars uploads srcs in order (references before referrers: the
// server registers each path as it arrives), pipelined: requests are
// written back to back while a goroutine reads the server's one-word
// acknowledgements, so the link stays busy instead of waiting one round
// trip per path. At most Options.MaxInFlightBytes of NAR data is sent
// ahead of the acknowledgements. If it fails, the paths acknowledged so
// far (see AddOptions.Acked) are valid on the server; the next one may be
// too if the failure lost its acknowledgement, and no later one is.
func (c *Client) AddToStoreNars(ctx context.Context, srcs []NarSource, opts AddOptions) error {
	for _, s := range srcs {
		if err := checkUpload(s); err != nil {
			return err
		}
	}
	if len(srcs) == 0 {
		return nil
	}
	if c.minor() < 5 {
		if err := c.ImportPaths(ctx, srcs); err != nil {
			return err
		}
		if opts.Acked != nil {
			for _, s := range srcs {
				opts.Acked(s.Info)
			}
		}
		return nil
	}
	return c.do(ctx, "AddToStoreNar", func() error { return c.pipelineAdd(ctx, srcs, opts) })
}

func checkUpload(s NarSource) error {
	switch {
	case s.Info == nil || s.Info.Path.IsZero():
		return errors.New("serve: upload without a store path")
	case s.Info.NarSize == 0:
		return fmt.Errorf("serve: cannot add %s: NAR size unknown", s.Info.Path)
	case s.WriteNAR == nil:
		return fmt.Errorf("serve: cannot add %s: no NAR", s.Info.Path)
	}
	return nil
}

func (c *Client) pipelineAdd(ctx context.Context, srcs []NarSource, opts AddOptions) error {
	limit := c.opts.MaxInFlightBytes
	if limit <= 0 {
		limit = 64 << 20
	}
	weight := func(i int) int64 { return min(int64(srcs[i].Info.NarSize)+1024, limit) }
	win := &window{max: limit, freed: make(chan struct{}, 1)}

	sent := make(chan int, len(srcs))
	readerDone := make(chan struct{})
	var readErr error
	go func() {
		defer close(readerDone)
		for i := range sent {
			v, err := c.r.ReadUint64()
			if err != nil {
				readErr = err
				return
			}
			if v != 1 {
				readErr = fmt.Errorf("%w: failed to add path '%s': server answered %d", ErrProtocol, srcs[i].Info.Path, v)
				return
			}
			win.release(weight(i))
			if opts.Acked != nil {
				opts.Acked(srcs[i].Info)
			}
		}
	}()

	var writeErr error
	for i, s := range srcs {
		if err := win.acquire(ctx, weight(i), readerDone); err != nil {
			writeErr = err
			break
		}
		if err := c.writeAddToStoreNar(s); err != nil {
			writeErr = err
			break
		}
		sent <- i
	}
	close(sent)
	<-readerDone
	var se *SourceError
	switch {
	case errors.As(writeErr, &se):
		return writeErr
	case readErr != nil:
		// The server's side of the story (EOF: it quit) explains a
		// failed write too.
		return readErr
	case writeErr == errReaderStopped:
		return io.ErrUnexpectedEOF
	}
	return writeErr
}

// writeAddToStoreNar writes one AddToStoreNar request (2.8 opServe
// cmdAddToStoreNar; legacy-ssh-store.cc addToStore): path, deriver,
// narHash (base16, as the 2.8 client sends it), references,
// registrationTime, narSize, ultimate, sigs, ca, then exactly narSize NAR
// bytes.
func (c *Client) writeAddToStoreNar(s NarSource) error {
	info := s.Info
	b := wire.AppendUint64(c.buf[:0], cmdAddToStoreNar)
	b = wire.AppendString(b, info.Path.String())
	b = appendOptPath(b, info.Deriver)
	b = wire.AppendString(b, hex.EncodeToString(info.NarHash[:]))
	b = appendPaths(b, info.References)
	b = wire.AppendUint64(b, uint64(info.RegistrationTime))
	b = wire.AppendUint64(b, info.NarSize)
	b = wire.AppendBool(b, info.Ultimate)
	b = wire.AppendStrings(b, info.Sigs)
	b = wire.AppendString(b, info.CA)
	c.buf = b[:0]
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	if err := writeNAR(c.w, s, true); err != nil {
		return err
	}
	return c.w.Flush()
}

// writeNAR runs s.WriteNAR into w, checking the size against
// Info.NarSize (always when exact, else when known).
func writeNAR(w io.Writer, s NarSource, exact bool) error {
	cw := &countingWriter{w: w, limit: s.Info.NarSize}
	if !exact && s.Info.NarSize == 0 {
		cw.limit = ^uint64(0)
	}
	if err := s.WriteNAR(cw); err != nil {
		if cw.werr != nil {
			// The transport failed, not the source.
			return cw.werr
		}
		return &SourceError{Path: s.Info.Path, Err: err}
	}
	if s.Info.NarSize != 0 && cw.n != s.Info.NarSize {
		return &SourceError{Path: s.Info.Path, Err: fmt.Errorf("NAR is %d bytes, its NarSize says %d", cw.n, s.Info.NarSize)}
	}
	return nil
}

var errTooLong = errors.New("NAR longer than its NarSize")

// countingWriter passes at most limit bytes to w and counts them.
type countingWriter struct {
	w     io.Writer
	n     uint64
	limit uint64
	werr  error
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	if uint64(len(p)) > cw.limit-cw.n {
		return 0, errTooLong
	}
	n, err := cw.w.Write(p)
	cw.n += uint64(n)
	if err != nil {
		cw.werr = err
	}
	return n, err
}

func appendOptPath(b []byte, p store.Path) []byte {
	if p.IsZero() {
		return wire.AppendString(b, "")
	}
	return wire.AppendString(b, p.String())
}

var errReaderStopped = errors.New("serve: acknowledgement reader stopped")

// window bounds the bytes in flight: acquire blocks while the bound would
// be exceeded (a lone item may exceed it), release frees.
type window struct {
	mu    sync.Mutex
	used  int64
	max   int64
	freed chan struct{} // capacity 1: a wake-up for the single acquirer
}

func (w *window) acquire(ctx context.Context, n int64, stop <-chan struct{}) error {
	for {
		w.mu.Lock()
		if w.used == 0 || w.used+n <= w.max {
			w.used += n
			w.mu.Unlock()
			return nil
		}
		w.mu.Unlock()
		select {
		case <-w.freed:
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return errReaderStopped
		}
	}
}

func (w *window) release(n int64) {
	w.mu.Lock()
	w.used -= n
	w.mu.Unlock()
	select {
	case w.freed <- struct{}{}:
	default:
	}
}

// ImportPaths sends srcs as one export stream (2.8 opServe
// cmdImportPaths, export-import.cc importPaths) and waits for the single
// acknowledgement. The server buffers each NAR in memory and registers
// paths as they complete; it keeps no signatures or CA from this format
// (only AddToStoreNar carries them).
func (c *Client) ImportPaths(ctx context.Context, srcs []NarSource) error {
	for _, s := range srcs {
		if s.Info == nil || s.Info.Path.IsZero() || s.WriteNAR == nil {
			return errors.New("serve: ImportPaths: incomplete source")
		}
	}
	return c.do(ctx, "ImportPaths", func() error {
		if _, err := c.w.Write(wire.AppendUint64(c.buf[:0], cmdImportPaths)); err != nil {
			return err
		}
		ew := NewExportWriter(c.w)
		for _, s := range srcs {
			if err := ew.WritePath(s); err != nil {
				return err
			}
		}
		if err := ew.Close(); err != nil {
			return err
		}
		if err := c.w.Flush(); err != nil {
			return err
		}
		v, err := c.r.ReadUint64()
		if err != nil {
			return err
		}
		if v != 1 {
			return fmt.Errorf("%w: ImportPaths answered %d", ErrProtocol, v)
		}
		return nil
	})
}

// exportMagic follows each NAR in an export stream ("NIXE").
const exportMagic = 0x4558494e

// ExportWriter writes Nix's export stream, the format of
// `nix-store --export` and `--import` (2.8 export-import.cc): per path
// "u64 1, NAR, u64 0x4558494e, str path, strlist references, str deriver,
// u64 0", then u64 0. It does not close the underlying writer.
type ExportWriter struct {
	w   io.Writer
	buf []byte
	err error
}

// NewExportWriter returns an ExportWriter on w.
func NewExportWriter(w io.Writer) *ExportWriter { return &ExportWriter{w: w} }

// WritePath writes one path; paths must come references first.
func (e *ExportWriter) WritePath(s NarSource) error {
	if e.err != nil {
		return e.err
	}
	if _, e.err = e.w.Write(wire.AppendUint64(e.buf[:0], 1)); e.err != nil {
		return e.err
	}
	if e.err = writeNAR(e.w, s, false); e.err != nil {
		return e.err
	}
	b := wire.AppendUint64(e.buf[:0], exportMagic)
	b = wire.AppendString(b, s.Info.Path.String())
	b = appendPaths(b, s.Info.References)
	b = appendOptPath(b, s.Info.Deriver)
	b = wire.AppendUint64(b, 0) // no legacy signature
	e.buf = b[:0]
	_, e.err = e.w.Write(b)
	return e.err
}

// Close writes the end marker.
func (e *ExportWriter) Close() error {
	if e.err != nil {
		return e.err
	}
	_, e.err = e.w.Write(wire.AppendUint64(e.buf[:0], 0))
	if e.err == nil {
		e.err = errors.New("serve: export stream closed")
		return nil
	}
	return e.err
}
