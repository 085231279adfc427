package nar

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// writeBufSize is the Writer's buffer; contents larger than what is free
// go straight to the underlying writer.
const writeBufSize = 64 << 10

type writeState uint8

const (
	wsStart writeState = iota // nothing written
	wsFile                    // a regular file's contents are due
	wsOpen                    // between entries of open directories
	wsDone                    // the root node is closed
	wsClosed
)

// writeDir is an open directory: its path and its last entry's name.
type writeDir struct {
	path string
	prev string
}

// Writer writes a canonical NAR: WriteHeader starts an entry, Write writes
// a regular file's contents, Close finishes the archive. Entries must come
// in NAR order (a directory before its entries, names sorted byte-wise,
// unique) or WriteHeader fails with ErrWriteOrder. The Writer buffers; Close
// flushes but does not close the underlying writer.
type Writer struct {
	w      io.Writer
	buf    []byte
	off    int64 // bytes emitted (buffered or written)
	err    error
	state  writeState
	remain int64 // contents still due for the current file
	size   int64
	path   string
	stack  []writeDir
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, buf: make([]byte, 0, writeBufSize)}
}

// Reset discards the Writer's state and makes it write a new NAR to w,
// keeping its buffer.
func (w *Writer) Reset(dst io.Writer) {
	*w = Writer{w: dst, buf: w.buf[:0], stack: w.stack[:0]}
}

// Offset returns the number of NAR bytes written so far.
func (w *Writer) Offset() int64 { return w.off }

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = &Error{Path: w.path, Offset: w.off, Err: err}
	}
	return w.err
}

// WriteHeader starts the entry h, first finishing the previous one. For a
// regular file, exactly h.Size bytes must then be written.
func (w *Writer) WriteHeader(h *Header) error {
	if w.err != nil {
		return w.err
	}
	path := strings.TrimPrefix(h.Path, "/")
	if err := w.finishFile(); err != nil {
		return err
	}
	switch w.state {
	case wsStart:
		if path != "" {
			w.path = path
			return w.fail(fmt.Errorf("%w: the first entry must be the root, not %q", ErrWriteOrder, h.Path))
		}
		w.token(magic)
		return w.node(h, "")
	case wsDone, wsClosed:
		w.path = path
		return w.fail(fmt.Errorf("%w: entry %q after the root's end", ErrWriteOrder, h.Path))
	}
	if path == "" {
		// Only the first entry is the root; another would be an entry
		// with an empty name.
		return w.fail(fmt.Errorf("%w: a second root entry", ErrWriteOrder))
	}
	parent, name := "", path
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		parent, name = path[:i], path[i+1:]
	}
	w.path = path
	for rest := path; rest != ""; {
		elem := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			elem, rest = rest[:i], rest[i+1:]
			if rest == "" {
				elem = "" // trailing slash
			}
		} else {
			rest = ""
		}
		if !validName([]byte(elem)) {
			return w.fail(fmt.Errorf("%w %q in %q", ErrInvalidName, elem, h.Path))
		}
	}
	for len(w.stack) > 0 && w.stack[len(w.stack)-1].path != parent {
		w.closeDir()
	}
	if len(w.stack) == 0 {
		w.state = wsDone
		return w.fail(fmt.Errorf("%w: %q is not in an open directory", ErrWriteOrder, h.Path))
	}
	dir := &w.stack[len(w.stack)-1]
	if dir.prev != "" && name <= dir.prev {
		if name == dir.prev {
			return w.fail(fmt.Errorf("%w: %w %q", ErrWriteOrder, ErrDuplicateName, name))
		}
		return w.fail(fmt.Errorf("%w: %w: %q after %q", ErrWriteOrder, ErrUnsorted, name, dir.prev))
	}
	dir.prev = name
	w.token(tagEntry)
	w.token(tagOpen)
	w.token(tagName)
	w.token(name)
	w.token(tagNode)
	return w.node(h, path)
}

// node writes a node's start; symlinks are complete at once.
func (w *Writer) node(h *Header, path string) error {
	w.token(tagOpen)
	w.token(tagType)
	switch h.Type {
	case TypeRegular:
		if h.Size < 0 {
			return w.fail(fmt.Errorf("%w: negative size %d", ErrWriteOrder, h.Size))
		}
		w.token(tagRegular)
		if h.Executable {
			w.token(tagExec)
			w.token("")
		}
		w.token(tagContents)
		w.buf = binary.LittleEndian.AppendUint64(w.buf, uint64(h.Size))
		w.off += 8
		w.remain, w.size = h.Size, h.Size
		w.state = wsFile
	case TypeSymlink:
		if h.LinkTarget == "" || strings.IndexByte(h.LinkTarget, 0) >= 0 {
			return w.fail(fmt.Errorf("%w %q", ErrInvalidTarget, h.LinkTarget))
		}
		w.token(tagSymlink)
		w.token(tagTarget)
		w.token(h.LinkTarget)
		w.token(tagClose)
		w.endNode()
	case TypeDirectory:
		w.token(tagDir)
		w.stack = append(w.stack, writeDir{path: path})
		w.state = wsOpen
	default:
		return w.fail(fmt.Errorf("%w: %v", ErrUnsupported, h.Type))
	}
	return w.flushIfFull()
}

// endNode follows a closed node: the entry holding it closes too.
func (w *Writer) endNode() {
	if len(w.stack) == 0 {
		w.state = wsDone
		return
	}
	w.token(tagClose)
	w.state = wsOpen
}

func (w *Writer) closeDir() {
	w.stack = w.stack[:len(w.stack)-1]
	w.token(tagClose)
	w.endNode()
}

// finishFile pads and closes the current regular file, if any.
func (w *Writer) finishFile() error {
	if w.state != wsFile {
		return nil
	}
	if w.remain != 0 {
		return w.fail(fmt.Errorf("%w: %d of %d bytes missing", ErrShortContents, w.remain, w.size))
	}
	if p := padLen(uint64(w.size)); p > 0 {
		w.buf = append(w.buf, zeros[:p]...)
		w.off += int64(p)
	}
	w.token(tagClose)
	w.endNode()
	return nil
}

var zeros [8]byte

// token appends a padded string to the buffer.
func (w *Writer) token(s string) {
	w.buf = binary.LittleEndian.AppendUint64(w.buf, uint64(len(s)))
	w.buf = append(w.buf, s...)
	p := padLen(uint64(len(s)))
	w.buf = append(w.buf, zeros[:p]...)
	w.off += int64(8 + len(s) + p)
}

func (w *Writer) flushIfFull() error {
	if len(w.buf) >= writeBufSize/2 {
		return w.flush()
	}
	return nil
}

func (w *Writer) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.w.Write(w.buf)
	w.buf = w.buf[:0]
	if err != nil {
		w.err = err
	}
	return err
}

// Write writes contents of the current regular file.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.state != wsFile {
		return 0, w.fail(fmt.Errorf("%w: contents written outside a regular file", ErrWriteOrder))
	}
	var tooLong bool
	if int64(len(p)) > w.remain {
		p, tooLong = p[:w.remain], true
	}
	n := len(p)
	if len(w.buf)+n <= cap(w.buf) {
		w.buf = append(w.buf, p...)
	} else {
		if err := w.flush(); err != nil {
			return 0, err
		}
		if n < cap(w.buf)/2 {
			w.buf = append(w.buf, p...)
		} else if _, err := w.w.Write(p); err != nil {
			w.err = err
			return 0, err
		}
	}
	w.remain -= int64(n)
	w.off += int64(n)
	if tooLong {
		return n, w.fail(ErrWriteTooLong)
	}
	return n, nil
}

// ReadFrom copies the current file's remaining contents from r straight
// into the Writer's buffer; r must hold exactly that many bytes.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.state != wsFile {
		return 0, w.fail(fmt.Errorf("%w: contents written outside a regular file", ErrWriteOrder))
	}
	var total int64
	for w.remain > 0 {
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return total, err
			}
		}
		free := w.buf[len(w.buf):cap(w.buf)]
		if int64(len(free)) > w.remain {
			free = free[:w.remain]
		}
		n, err := r.Read(free)
		w.buf = w.buf[:len(w.buf)+n]
		w.remain -= int64(n)
		w.off += int64(n)
		total += int64(n)
		if err == io.EOF {
			if w.remain > 0 {
				return total, w.fail(fmt.Errorf("%w: source ended %d bytes early", ErrShortContents, w.remain))
			}
			break
		}
		if err != nil {
			return total, w.fail(err)
		}
	}
	return total, nil
}

// Close finishes the archive (closing open directories) and flushes it. It
// fails if no root was written or a file's contents are incomplete.
func (w *Writer) Close() error {
	if w.state == wsClosed {
		return w.err
	}
	if w.err != nil {
		return w.err
	}
	if err := w.finishFile(); err != nil {
		return err
	}
	if w.state == wsStart {
		return w.fail(fmt.Errorf("%w: no root entry", ErrWriteOrder))
	}
	for len(w.stack) > 0 {
		w.closeDir()
	}
	if err := w.flush(); err != nil {
		return err
	}
	w.state = wsClosed
	return nil
}
