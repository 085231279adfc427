package nar

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// The tokens of the NAR grammar (2.8 src/libutil/archive.cc).
const (
	magic       = "nix-archive-1"
	tagOpen     = "("
	tagClose    = ")"
	tagType     = "type"
	tagRegular  = "regular"
	tagDir      = "directory"
	tagSymlink  = "symlink"
	tagExec     = "executable"
	tagContents = "contents"
	tagTarget   = "target"
	tagEntry    = "entry"
	tagName     = "name"
	tagNode     = "node"

	// maxTag bounds tags: the longest is "nix-archive-1"; anything longer is
	// no tag at all, reported without reading it.
	maxTag = 16
)

// ReaderOptions bound what a Reader accepts. The zero value means the
// defaults noted on each field.
type ReaderOptions struct {
	// MaxEntrySize bounds a regular file's size; 0 means 1 TiB.
	MaxEntrySize int64
	// MaxNameLen bounds an entry name; 0 means 255 bytes (NAME_MAX).
	MaxNameLen int
	// MaxTargetLen bounds a symlink target; 0 means 4095 bytes (PATH_MAX-1).
	MaxTargetLen int
	// MaxDepth bounds directory nesting; 0 means 256.
	MaxDepth int
}

func (o ReaderOptions) withDefaults() ReaderOptions {
	if o.MaxEntrySize <= 0 {
		o.MaxEntrySize = 1 << 40
	}
	if o.MaxNameLen <= 0 {
		o.MaxNameLen = 255
	}
	if o.MaxTargetLen <= 0 {
		o.MaxTargetLen = 4095
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = 256
	}
	return o
}

type readState uint8

const (
	rsMagic    readState = iota // nothing read yet
	rsFile                      // inside a regular file's contents
	rsNodeDone                  // a node's ")" has been read
	rsDirBody                   // expecting "entry" or the directory's ")"
	rsDone                      // the archive is complete
)

// readDir is an open directory: its path and the last name read in it.
type readDir struct {
	path string
	prev string
}

// Reader reads a NAR entry by entry. Next advances to the next entry; for a
// regular file the Reader itself then reads its contents. Errors are sticky
// and carry the entry path and NAR offset (*Error).
//
// The Reader reads from its source exactly the bytes of one NAR and never
// more; it does not close the source and starts no goroutine.
type Reader struct {
	src    io.Reader
	tee    io.Writer // receives every byte consumed (Copy)
	opts   ReaderOptions
	off    int64 // bytes consumed from src
	tokOff int64 // offset of the token being parsed, for errors
	err    error
	state  readState
	remain int64 // contents left in the current file
	pad    int   // padding after the current file's contents
	path   string
	stack  []readDir
	tok    []byte // scratch for tokens, names and targets
	u64    [8]byte
}

// NewReader returns a Reader of the NAR in r with default bounds.
func NewReader(r io.Reader) *Reader { return NewReaderOptions(r, ReaderOptions{}) }

// NewReaderOptions returns a Reader of the NAR in r with the given bounds.
func NewReaderOptions(r io.Reader, opts ReaderOptions) *Reader {
	opts = opts.withDefaults()
	// The scratch buffer also serves to skip contents, hence the minimum.
	n := max(opts.MaxNameLen+8, opts.MaxTargetLen+8, 4096)
	return &Reader{src: r, opts: opts, tok: make([]byte, n)}
}

// Offset returns the number of NAR bytes consumed so far; after Next has
// returned io.EOF it is the size of the NAR.
func (r *Reader) Offset() int64 { return r.off }

// Next advances to the next entry, skipping whatever is left of the current
// file's contents. Entries come in NAR order: a directory before its
// entries, entries sorted by name. At the end of the archive Next returns
// io.EOF, having consumed exactly the NAR's bytes.
func (r *Reader) Next() (*Header, error) {
	if r.err != nil {
		return nil, r.err
	}
	h, err := r.next()
	if err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		off := r.tokOff
		if err == io.ErrUnexpectedEOF {
			off = r.off
		}
		r.err = &Error{Path: r.path, Offset: off, Err: err}
		return nil, r.err
	}
	return h, nil
}

func (r *Reader) next() (*Header, error) {
	switch r.state {
	case rsMagic:
		r.tokOff = r.off
		n, err := r.readLen()
		if err != nil {
			return nil, err
		}
		if n != uint64(len(magic)) {
			return nil, ErrBadMagic
		}
		b, err := r.readPadded(n)
		if err != nil {
			if err == ErrNonZeroPadding {
				return nil, ErrBadMagic
			}
			return nil, err
		}
		if string(b) != magic {
			return nil, ErrBadMagic
		}
		return r.readNode("")
	case rsFile:
		if err := r.skipContents(); err != nil {
			return nil, err
		}
		if err := r.expect(tagClose); err != nil {
			return nil, err
		}
		r.state = rsNodeDone
	case rsDone:
		return nil, io.EOF
	}
	for {
		switch r.state {
		case rsNodeDone:
			if len(r.stack) == 0 {
				r.state = rsDone
				return nil, io.EOF
			}
			if err := r.expect(tagClose); err != nil { // the entry's ")"
				return nil, err
			}
			r.state = rsDirBody
		case rsDirBody:
			tag, err := r.readTag()
			if err != nil {
				return nil, err
			}
			switch string(tag) {
			case tagClose:
				r.stack = r.stack[:len(r.stack)-1]
				if len(r.stack) > 0 {
					r.path = r.stack[len(r.stack)-1].path
				}
				r.state = rsNodeDone
				continue
			case tagEntry:
			default:
				return nil, unexpectedTag(tag, tagEntry, tagClose)
			}
			if err := r.expect(tagOpen); err != nil {
				return nil, err
			}
			if err := r.expect(tagName); err != nil {
				return nil, err
			}
			name, err := r.readBounded(r.opts.MaxNameLen, "name")
			if err != nil {
				return nil, err
			}
			if !validName(name) {
				return nil, fmt.Errorf("%w %q", ErrInvalidName, name)
			}
			dir := &r.stack[len(r.stack)-1]
			if dir.prev != "" {
				switch c := strings.Compare(string(name), dir.prev); {
				case c == 0:
					return nil, fmt.Errorf("%w %q", ErrDuplicateName, name)
				case c < 0:
					return nil, fmt.Errorf("%w: %q after %q", ErrUnsorted, name, dir.prev)
				}
			}
			var path string
			if dir.path == "" {
				path = string(name)
			} else {
				path = dir.path + "/" + string(name)
			}
			dir.prev = path[len(path)-len(name):]
			r.path = path
			if err := r.expect(tagNode); err != nil {
				return nil, err
			}
			return r.readNode(path)
		}
	}
}

// readNode reads a node up to its contents (regular file), its end
// (symlink) or its first entry (directory).
func (r *Reader) readNode(path string) (*Header, error) {
	r.path = path
	if err := r.expect(tagOpen); err != nil {
		return nil, err
	}
	if err := r.expect(tagType); err != nil {
		return nil, err
	}
	kind, err := r.readTag()
	if err != nil {
		return nil, err
	}
	switch string(kind) {
	case tagRegular:
		h := &Header{Path: path, Type: TypeRegular}
		tag, err := r.readTag()
		if err != nil {
			return nil, err
		}
		if string(tag) == tagExec {
			h.Executable = true
			r.tokOff = r.off
			n, err := r.readLen()
			if err != nil {
				return nil, err
			}
			if n != 0 {
				return nil, ErrBadExecutable
			}
			tag, err = r.readTag()
			if err != nil {
				return nil, err
			}
		}
		if string(tag) != tagContents {
			if h.Executable {
				return nil, unexpectedTag(tag, tagContents)
			}
			return nil, unexpectedTag(tag, tagExec, tagContents)
		}
		r.tokOff = r.off
		n, err := r.readLen()
		if err != nil {
			return nil, err
		}
		if n > uint64(r.opts.MaxEntrySize) {
			return nil, fmt.Errorf("%w: file of %d bytes (limit %d)", ErrTooLong, n, r.opts.MaxEntrySize)
		}
		h.Size = int64(n)
		h.Offset = r.off
		r.remain = h.Size
		r.pad = padLen(n)
		r.state = rsFile
		return h, nil
	case tagSymlink:
		if err := r.expect(tagTarget); err != nil {
			return nil, err
		}
		target, err := r.readBounded(r.opts.MaxTargetLen, "symlink target")
		if err != nil {
			return nil, err
		}
		if len(target) == 0 {
			return nil, fmt.Errorf("%w: empty", ErrInvalidTarget)
		}
		if bytes.IndexByte(target, 0) >= 0 {
			return nil, fmt.Errorf("%w: contains NUL", ErrInvalidTarget)
		}
		h := &Header{Path: path, Type: TypeSymlink, LinkTarget: string(target)}
		if err := r.expect(tagClose); err != nil {
			return nil, err
		}
		r.state = rsNodeDone
		return h, nil
	case tagDir:
		if len(r.stack) >= r.opts.MaxDepth {
			return nil, fmt.Errorf("%w (limit %d)", ErrTooDeep, r.opts.MaxDepth)
		}
		r.stack = append(r.stack, readDir{path: path})
		r.state = rsDirBody
		return &Header{Path: path, Type: TypeDirectory}, nil
	}
	return nil, unexpectedTag(kind, tagRegular, tagDir, tagSymlink)
}

// Read reads the current regular file's contents; it returns io.EOF at
// their end, and 0, io.EOF when the current entry is not a regular file.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.state != rsFile || r.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.src.Read(p)
	if n > 0 {
		r.off += int64(n)
		r.remain -= int64(n)
		if r.tee != nil {
			if _, werr := r.tee.Write(p[:n]); werr != nil {
				r.err = werr
				return n, werr
			}
		}
	}
	if err == io.EOF {
		if r.remain > 0 {
			err = io.ErrUnexpectedEOF
		} else {
			err = nil
		}
	}
	if err != nil {
		r.err = &Error{Path: r.path, Offset: r.off, Err: err}
		return n, r.err
	}
	return n, nil
}

// skipContents discards the rest of the current file and checks its padding.
func (r *Reader) skipContents() error {
	for r.remain > 0 {
		buf := r.tok
		if int64(len(buf)) > r.remain {
			buf = buf[:r.remain]
		}
		if err := r.readFull(buf); err != nil {
			return err
		}
		r.remain -= int64(len(buf))
	}
	if r.pad > 0 {
		r.tokOff = r.off
		b := r.u64[:r.pad]
		if err := r.readFull(b); err != nil {
			return err
		}
		for _, c := range b {
			if c != 0 {
				return ErrNonZeroPadding
			}
		}
		r.pad = 0
	}
	return nil
}

// readFull reads exactly len(b) bytes from src.
func (r *Reader) readFull(b []byte) error {
	n, err := io.ReadFull(r.src, b)
	r.off += int64(n)
	if r.tee != nil && n > 0 {
		if _, werr := r.tee.Write(b[:n]); werr != nil {
			return werr
		}
	}
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (r *Reader) readLen() (uint64, error) {
	if err := r.readFull(r.u64[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(r.u64[:]), nil
}

// readPadded reads n bytes and their zero padding into the scratch buffer;
// the caller has bounded n by the scratch size.
func (r *Reader) readPadded(n uint64) ([]byte, error) {
	total := int(n) + padLen(n)
	b := r.tok[:total]
	if err := r.readFull(b); err != nil {
		return nil, err
	}
	for _, c := range b[n:] {
		if c != 0 {
			return nil, ErrNonZeroPadding
		}
	}
	return b[:n], nil
}

// readBounded reads a string of at most limit bytes.
func (r *Reader) readBounded(limit int, what string) ([]byte, error) {
	r.tokOff = r.off
	n, err := r.readLen()
	if err != nil {
		return nil, err
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("%w: %s of %d bytes (limit %d)", ErrTooLong, what, n, limit)
	}
	return r.readPadded(n)
}

// readTag reads one tag; anything longer than any tag is rejected unread.
func (r *Reader) readTag() ([]byte, error) {
	r.tokOff = r.off
	n, err := r.readLen()
	if err != nil {
		return nil, err
	}
	if n > maxTag {
		return nil, fmt.Errorf("%w: token of %d bytes where a tag was due", ErrUnexpectedTag, n)
	}
	return r.readPadded(n)
}

func (r *Reader) expect(tag string) error {
	got, err := r.readTag()
	if err != nil {
		return err
	}
	if string(got) != tag {
		return unexpectedTag(got, tag)
	}
	return nil
}

func unexpectedTag(got []byte, want ...string) error {
	return fmt.Errorf("%w %q, want %q", ErrUnexpectedTag, got, strings.Join(want, `" or "`))
}

func padLen(n uint64) int { return int((8 - n%8) % 8) }

// validName reports whether name may be a directory entry (2.8 archive.cc
// parse: not empty, ".", "..", no "/" or NUL).
func validName(name []byte) bool {
	if len(name) == 0 || string(name) == "." || string(name) == ".." {
		return false
	}
	return bytes.IndexByte(name, '/') < 0 && bytes.IndexByte(name, 0) < 0
}
