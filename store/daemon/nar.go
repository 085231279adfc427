package daemon

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
)

// NarFromPath streams the NAR of the valid path p to w. The NAR is
// validated on the way; if w fails, the rest of the NAR is still read so
// the connection stays usable.
func (c *Conn) NarFromPath(ctx context.Context, p store.Path, w io.Writer) error {
	end, err := c.begin(ctx, OpNarFromPath)
	if err != nil {
		return err
	}
	return end(c.narFromPath(p, w))
}

func (c *Conn) narFromPath(p store.Path, w io.Writer) error {
	c.buf = wire.AppendUint64(c.buf[:0], uint64(OpNarFromPath))
	c.buf = wire.AppendString(c.buf, p.String())
	if err := c.send(); err != nil {
		return err
	}
	if _, err := c.processStderr(OpNarFromPath, nil); err != nil {
		return err
	}
	if n := c.errorForNAR(); n > 0 {
		c.br.Discard(n)
		de, err := c.readError(OpNarFromPath)
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: %s: %w: %w", ErrBroken, p, store.ErrNotValid, de)
	}
	// The NAR follows STDERR_LAST unframed: only parsing it finds its end.
	sw := &stickyWriter{w: w}
	if _, err := nar.Copy(sw, c.br); err != nil {
		return fmt.Errorf("reading NAR of %s: %w", p, err)
	}
	if sw.err != nil {
		return synced(sw.err)
	}
	return nil
}

// NarsFromPaths asks for the NARs of paths all at once and hands each one,
// in order, to each(i, r), where r reads exactly the NAR of paths[i]: the
// requests go out beside the reading, so there is no round trip per path
// (NarFromPath waits for each). each must read r to its end or fail.
//
// The first failure ends the call: an invalid path (2.8 closes the
// connection after the error frame), a NAR that does not parse, or each's
// error, returned as it is. After a failure the connection is broken;
// NARs handed over before it were complete.
func (c *Conn) NarsFromPaths(ctx context.Context, paths []store.Path, each func(i int, r io.Reader) error) error {
	if len(paths) == 0 {
		return nil
	}
	end, err := c.begin(ctx, OpNarFromPath)
	if err != nil {
		return err
	}
	return end(c.narsFromPaths(paths, each))
}

func (c *Conn) narsFromPaths(paths []store.Path, each func(int, io.Reader) error) error {
	werr := c.sendPathOps(OpNarFromPath, paths)
	fail := func(err error) error {
		c.rwc.Close() // unblocks the writer; the rest of the stream is lost
		<-werr
		return fmt.Errorf("%w: %w", ErrBroken, err)
	}
	for i, p := range paths {
		if _, err := c.processStderr(OpNarFromPath, nil); err != nil {
			return fail(err)
		}
		if n := c.errorForNAR(); n > 0 {
			c.br.Discard(n)
			de, err := c.readError(OpNarFromPath)
			if err != nil {
				return fail(err)
			}
			return fail(fmt.Errorf("%s: %w: %w", p, store.ErrNotValid, de))
		}
		eerr, cerr := nar.Hand(c.br, func(r io.Reader) error { return each(i, r) })
		if eerr != nil {
			c.rwc.Close()
			<-werr
			c.breakWith(fmt.Errorf("%w: NarFromPath %s: %w", ErrBroken, p, eerr))
			return eerr
		}
		if cerr != nil {
			return fail(fmt.Errorf("reading NAR of %s: %w", p, cerr))
		}
	}
	return <-werr
}

// narMagic is how every NAR begins on the wire: the padded string
// "nix-archive-1".
var narMagic = string(wire.AppendString(nil, "nix-archive-1"))

// errorForNAR returns how many bytes to discard to reach the body of an
// error frame the daemon sent where a NAR was due, or 0 when a NAR
// follows. 2.8 sends
// STDERR_LAST before it dumps the path, and dumpPath writes the NAR's
// magic before it lstat()s the path (daemon.cc wopNarFromPath,
// archive.cc dumpPath), so a path that is not in the store comes as the
// magic and then the frame; a daemon that checks validity first sends the
// frame alone. Either way the daemon then closes the connection. Any NAR
// is longer than what is peeked, so the peek never waits past one.
func (c *Conn) errorForNAR() int {
	head, _ := c.br.Peek(len(narMagic) + 8)
	switch {
	case len(head) >= 8 && binary.LittleEndian.Uint64(head) == stderrError:
		return 8
	case len(head) == len(narMagic)+8 && string(head[:len(narMagic)]) == narMagic &&
		binary.LittleEndian.Uint64(head[len(narMagic):]) == stderrError:
		return len(narMagic) + 8
	}
	return 0
}

// stickyWriter remembers the first write error and then discards.
type stickyWriter struct {
	w   io.Writer
	err error
}

func (s *stickyWriter) Write(p []byte) (int, error) {
	if s.err == nil {
		_, s.err = s.w.Write(p)
	}
	return len(p), nil
}

// AddFlags modify uploads. Both need a trusted client; an untrusted
// client's NoCheckSigs is ignored by the daemon.
type AddFlags struct {
	Repair      bool
	NoCheckSigs bool
	// KnownMissing tells AddMultipleToStore that the caller has just
	// found none of the paths valid, so the pre-check older daemons need
	// (see AddMultipleToStore) is skipped.
	KnownMissing bool
	// EndStream calls the transport's EndStream method (it must have one)
	// once the upload is complete, before the reply is read. It is for
	// sessions whose input passes through a decompressor on the remote:
	// the transport ends the compressed stream there and pushes it through
	// the decompressor's buffers, and no further request may follow.
	// (Closing the input instead would race: a 2.8 daemon treats a hung-up
	// input during an operation as an interrupt.)
	EndStream bool
}

// AddToStoreNar adds info.Path from its NAR, which the daemon checks
// against info.NarHash and info.NarSize. Adding a path that is already
// valid succeeds without changing it.
func (c *Conn) AddToStoreNar(ctx context.Context, info *store.PathInfo, narData io.Reader) error {
	return c.AddToStoreNarFlags(ctx, info, narData, AddFlags{})
}

// AddToStoreNarFlags is AddToStoreNar with flags.
func (c *Conn) AddToStoreNarFlags(ctx context.Context, info *store.PathInfo, narData io.Reader, flags AddFlags) error {
	end, err := c.begin(ctx, OpAddToStoreNar)
	if err != nil {
		return err
	}
	c.buf = wire.AppendUint64(c.buf[:0], uint64(OpAddToStoreNar))
	c.buf = wire.AppendString(c.buf, info.Path.String())
	c.buf = appendPathInfo(c.buf, info)
	c.buf = wire.AppendBool(c.buf, flags.Repair)
	c.buf = wire.AppendBool(c.buf, flags.NoCheckSigs)
	_, err = c.upload(OpAddToStoreNar, flags.EndStream, func(w io.Writer) error {
		_, err := nar.Copy(w, narData)
		return err
	})
	return end(err)
}

// appendPathInfo appends the unkeyed ValidPathInfo fields (2.8
// ValidPathInfo::write, format ≥ 16).
func appendPathInfo(b []byte, info *store.PathInfo) []byte {
	b = wire.AppendString(b, info.Deriver.String())
	var hx [64]byte
	hex.Encode(hx[:], info.NarHash[:])
	b = wire.AppendBytes(b, hx[:])
	b = appendPaths(b, info.References)
	b = wire.AppendUint64(b, uint64(info.RegistrationTime))
	b = wire.AppendUint64(b, info.NarSize)
	b = wire.AppendBool(b, info.Ultimate)
	b = wire.AppendStrings(b, info.Sigs)
	return wire.AppendString(b, info.CA)
}

// NarWriterFunc writes the NAR of info.Path to w.
type NarWriterFunc func(info *store.PathInfo, w io.Writer) error

// AddMultipleToStore adds many paths in one op; infos must be in
// dependency order (a path's references before it) and writeNar supplies
// each NAR in turn.
//
// Nix 2.8 to 2.17 lose their place in the stream when a path is already
// valid (NixOS/nix#6253), so for daemons older than 2.18 (or that do not
// say their version) AddMultipleToStore first asks which paths are valid
// and sends only the others. That costs one round trip and still races with
// other writers to the same store; AddToStoreNar has no such hazard.
func (c *Conn) AddMultipleToStore(ctx context.Context, infos []*store.PathInfo, writeNar NarWriterFunc, flags AddFlags) error {
	if len(infos) == 0 {
		return nil
	}
	if !flags.KnownMissing && !nixAtLeast(c.nixVer, 2, 18) {
		paths := make([]store.Path, len(infos))
		for i, info := range infos {
			paths[i] = info.Path
		}
		valid, err := c.QueryValidPaths(ctx, paths, false)
		if err != nil {
			return err
		}
		if len(valid) > 0 {
			isValid := make(map[store.Path]bool, len(valid))
			for _, p := range valid {
				isValid[p] = true
			}
			missing := make([]*store.PathInfo, 0, len(infos)-len(valid))
			for _, info := range infos {
				if !isValid[info.Path] {
					missing = append(missing, info)
				}
			}
			if infos = missing; len(infos) == 0 {
				return nil
			}
		}
	}
	end, err := c.begin(ctx, OpAddMultipleToStore)
	if err != nil {
		return err
	}
	c.buf = wire.AppendUint64(c.buf[:0], uint64(OpAddMultipleToStore))
	c.buf = wire.AppendBool(c.buf, flags.Repair)
	c.buf = wire.AppendBool(c.buf, flags.NoCheckSigs)
	_, err = c.upload(OpAddMultipleToStore, flags.EndStream, func(w io.Writer) error {
		var b []byte
		b = wire.AppendUint64(b, uint64(len(infos)))
		for _, info := range infos {
			b = wire.AppendString(b, info.Path.String())
			b = appendPathInfo(b, info)
			if _, err := w.Write(b); err != nil {
				return err
			}
			b = b[:0]
			cw := &countingWriter{w: w}
			if err := writeNar(info, cw); err != nil {
				return &sourceError{fmt.Errorf("NAR of %s: %w", info.Path, err)}
			}
			if cw.n != int64(info.NarSize) {
				return &sourceError{fmt.Errorf("NAR of %s: wrote %d bytes, info says %d", info.Path, cw.n, info.NarSize)}
			}
		}
		return nil
	})
	return end(err)
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// nixAtLeast reports whether a Nix version string such as "2.8.0" or
// "2.18.1pre" is at least major.minor; unknown versions are not.
func nixAtLeast(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	digits := parts[1]
	if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = digits[:i] // "18pre2023…" is 18
	}
	mi, err2 := strconv.Atoi(digits)
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// AddToStore adds data as a content-addressed path with the given method
// ("text:sha256" for text such as .drv files, "fixed:r:sha256" for a NAR,
// "fixed:sha256" for a flat file) and returns the new path's info
// (op 7, protocol ≥ 1.25).
func (c *Conn) AddToStore(ctx context.Context, name, method string, refs []store.Path, data io.Reader, repair bool) (*store.PathInfo, error) {
	end, err := c.begin(ctx, OpAddToStore)
	if err != nil {
		return nil, err
	}
	c.buf = wire.AppendUint64(c.buf[:0], uint64(OpAddToStore))
	c.buf = wire.AppendString(c.buf, name)
	c.buf = wire.AppendString(c.buf, method)
	c.buf = appendPaths(c.buf, refs)
	c.buf = wire.AppendBool(c.buf, repair)
	var info *store.PathInfo
	_, err = c.upload(OpAddToStore, false, func(w io.Writer) error {
		_, err := io.Copy(w, data)
		return err
	})
	if err == nil {
		info, err = readKeyedPathInfo(c.r)
	}
	return info, end(err)
}

// AddTextToStore adds a text object (a .drv file, or builtins.toFile
// contents) and returns its path.
func (c *Conn) AddTextToStore(ctx context.Context, name string, text []byte, refs []store.Path) (store.Path, error) {
	info, err := c.AddToStore(ctx, name, "text:sha256", refs, strings.NewReader(string(text)), false)
	if err != nil {
		return store.Path{}, err
	}
	return info.Path, nil
}

// readKeyedPathInfo reads a path followed by its unkeyed ValidPathInfo.
func readKeyedPathInfo(r *wire.Reader) (*store.PathInfo, error) {
	s, err := r.ReadString()
	if err != nil {
		return nil, err
	}
	p, perr := store.ParsePath(s)
	info, err := readPathInfo(r, p)
	if err != nil {
		return nil, err
	}
	if perr != nil {
		return nil, synced(perr)
	}
	return info, nil
}

// sourceError marks a failure of the caller's data source during an
// upload, as opposed to a failure of the connection.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// errStderrDone stops an upload because the daemon has already answered.
var errStderrDone = errors.New("daemon answered during upload")

// upload finishes an op whose request is in c.buf with a framed stream
// written by body, reading the stderr loop concurrently because the daemon
// may report (and fail) while data is still arriving (2.8 remote-store.cc
// ConnectionHandle::withFramedSink). On return the reader goroutine has
// ended and, unless the error breaks the connection, the stream is in step.
func (c *Conn) upload(op Op, endStream bool, body func(w io.Writer) error) (*logTail, error) {
	if _, err := c.bw.Write(c.buf); err != nil {
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	var (
		tail *logTail
		serr error
	)
	go func() {
		defer close(done)
		tail, serr = c.processStderr(op, nil)
	}()
	fw := &framedBody{fw: wire.NewFramedWriter(c.bw), done: done}
	berr := body(fw)
	if berr == nil && fw.werr == nil {
		if err := fw.fw.Close(); err != nil {
			fw.werr = err
		} else if err := c.bw.Flush(); err != nil {
			fw.werr = err
		}
	} else if fw.werr == nil {
		// The source failed or the daemon already answered: end the stream
		// so the daemon, which drains to the terminator, stays in step.
		if err := fw.fw.Close(); err == nil {
			fw.werr = c.bw.Flush()
		} else {
			fw.werr = err
		}
	}
	if fw.werr == nil && endStream {
		if es, ok := c.rwc.(interface{ EndStream() error }); !ok {
			fw.werr = fmt.Errorf("%w: EndStream on a transport without an EndStream method", ErrProtocol)
		} else {
			fw.werr = es.EndStream()
		}
	}
	if fw.werr != nil {
		c.rwc.Close() // unblocks the reader goroutine
		<-done
		return nil, fw.werr
	}
	<-done
	switch {
	case serr != nil && !isDaemonError(serr):
		return tail, serr
	case berr == nil || errors.Is(berr, errStderrDone):
		if serr == nil && berr != nil {
			return tail, fmt.Errorf("%w: daemon finished before the upload did", ErrProtocol)
		}
		return tail, serr
	default:
		// The caller's data was bad; the daemon's complaint about the
		// truncated stream is a consequence.
		var de *Error
		if errors.As(serr, &de) {
			return tail, synced(fmt.Errorf("%w (daemon: %s)", berr, de.Message))
		}
		return tail, synced(berr)
	}
}

// framedBody writes frames until the daemon's stderr loop ends early.
type framedBody struct {
	fw   *wire.FramedWriter
	done <-chan struct{}
	werr error // the connection failed
}

func (f *framedBody) Write(p []byte) (int, error) {
	if f.werr != nil {
		return 0, f.werr
	}
	select {
	case <-f.done:
		return 0, errStderrDone
	default:
	}
	n, err := f.fw.Write(p)
	if err != nil {
		f.werr = err
		return n, &connWriteError{err}
	}
	return n, nil
}

type connWriteError struct{ err error }

func (e *connWriteError) Error() string { return e.err.Error() }
func (e *connWriteError) Unwrap() error { return e.err }
