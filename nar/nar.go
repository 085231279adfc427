// Package nar reads and writes Nix archives (NARs), the canonical
// serialisation of a file system tree that Nix hashes, signs and copies
// (2.8 src/libutil/archive.cc dump/parse).
//
// Vocabulary:
//
//   - entry: one node of the tree, a regular file, a directory or a symlink.
//     Its Header carries the slash-separated Path relative to the archive's
//     root: "" is the root itself, "a" a child of the root, "a/b" a grandchild.
//     Paths never start or end with "/".
//   - contents: the bytes of a regular file; Header.Offset is where they
//     start in the NAR (the narOffset of a .ls listing).
//   - canonical: entries in byte order of their names, unique, names free of
//     "/" and NUL and not "." or "..", zero padding everywhere. The Writer
//     only produces and the Reader only accepts canonical NARs, stricter than
//     Nix 2.8 (which accepts unsorted entries), so nbuild never forwards a NAR
//     whose re-dump would hash differently.
//
// The Reader is a pull parser in the archive/tar shape and never reads a
// byte past the end of the archive from its source: protocol streams carry
// more data after a NAR. It reads small tokens with many small reads, so
// callers that care about speed hand it a *bufio.Reader.
package nar

import (
	"errors"
	"fmt"
	"io"
)

// Type is the kind of an entry.
type Type uint8

const (
	TypeRegular Type = iota + 1
	TypeDirectory
	TypeSymlink
)

func (t Type) String() string {
	switch t {
	case TypeRegular:
		return "regular"
	case TypeDirectory:
		return "directory"
	case TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("nar.Type(%d)", uint8(t))
}

// Header describes one entry.
type Header struct {
	// Path is slash-separated and relative to the root: "" for the root,
	// "a/b" for entry b of directory a. The Writer also accepts "/" for the
	// root and one leading "/" on other paths.
	Path string
	Type Type
	// Executable is set for regular files whose owner-execute bit was set.
	Executable bool
	// Size is the length of a regular file's contents.
	Size int64
	// LinkTarget is a symlink's target, verbatim (never resolved).
	LinkTarget string
	// Offset is the byte offset of a regular file's contents in the NAR.
	// The Writer ignores it.
	Offset int64
}

// Name returns the last element of h.Path ("" for the root).
func (h *Header) Name() string {
	for i := len(h.Path) - 1; i >= 0; i-- {
		if h.Path[i] == '/' {
			return h.Path[i+1:]
		}
	}
	return h.Path
}

// Sentinel errors; the Reader and Writer wrap them in an *Error.
var (
	ErrBadMagic       = errors.New("nar: input doesn't look like a Nix archive")
	ErrInvalidName    = errors.New("nar: invalid file name")
	ErrUnsorted       = errors.New("nar: entries not in sorted order")
	ErrDuplicateName  = errors.New("nar: duplicate entry name")
	ErrTooLong        = errors.New("nar: length exceeds limit")
	ErrNonZeroPadding = errors.New("nar: non-zero padding")
	ErrUnexpectedTag  = errors.New("nar: unexpected tag")
	ErrBadExecutable  = errors.New("nar: executable marker has non-empty value")
	ErrInvalidTarget  = errors.New("nar: invalid symlink target")
	ErrTooDeep        = errors.New("nar: directories nested too deep")
	ErrTrailingData   = errors.New("nar: trailing data after the archive")
	// ErrTruncated is io.ErrUnexpectedEOF, so errors.Is works with either.
	ErrTruncated = io.ErrUnexpectedEOF

	ErrWriteOrder    = errors.New("nar: entry out of order for this writer")
	ErrWriteTooLong  = errors.New("nar: write past the entry's size")
	ErrShortContents = errors.New("nar: fewer bytes written than the entry's size")
	ErrClosed        = errors.New("nar: writer closed")
	ErrUnsupported   = errors.New("nar: unsupported file type")
)

// Error locates a failure: the entry path being read or written and the
// byte offset in the NAR at which it was detected.
type Error struct {
	Path   string
	Offset int64
	Err    error
}

func (e *Error) Error() string {
	p := e.Path
	if p == "" {
		p = "/"
	} else {
		p = "/" + p
	}
	return fmt.Sprintf("%v (entry %q, NAR offset %d)", e.Err, p, e.Offset)
}

func (e *Error) Unwrap() error { return e.Err }
