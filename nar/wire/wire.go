// Package wire implements the primitive encodings shared by NAR files and
// Nix's worker and serve protocols (2.8 src/libutil/serialise.{hh,cc}):
//
//   - u64: eight bytes, little-endian; booleans, enums and versions are u64s.
//   - string: u64 length, the bytes, zero padding to a multiple of eight.
//   - string list: u64 count, then that many strings.
//   - framed stream: chunks "u64 n, n raw bytes" (no padding) ended by u64 0.
//
// Readers bound every length they accept, so a hostile peer cannot make
// nbuild allocate more than the caller allows.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrNonZeroPadding is returned when the padding after a string is not zero.
var ErrNonZeroPadding = errors.New("wire: non-zero padding")

// ErrTooLong is wrapped when a length prefix exceeds the caller's bound.
var ErrTooLong = errors.New("wire: length exceeds limit")

// LengthError reports a length prefix over the allowed bound.
type LengthError struct {
	What  string
	Len   uint64
	Limit uint64
}

func (e *LengthError) Error() string {
	return fmt.Sprintf("wire: %s length %d exceeds limit %d", e.What, e.Len, e.Limit)
}

func (e *LengthError) Unwrap() error { return ErrTooLong }

// PadLen returns the number of zero bytes that follow a string of length n.
func PadLen(n uint64) int { return int((8 - n%8) % 8) }

var zeros [8]byte

// AppendUint64 appends v as eight little-endian bytes.
func AppendUint64(dst []byte, v uint64) []byte {
	return binary.LittleEndian.AppendUint64(dst, v)
}

// AppendString appends s as a length-prefixed, zero-padded string.
func AppendString(dst []byte, s string) []byte {
	dst = AppendUint64(dst, uint64(len(s)))
	dst = append(dst, s...)
	return append(dst, zeros[:PadLen(uint64(len(s)))]...)
}

// AppendBytes is AppendString for a byte slice.
func AppendBytes(dst []byte, s []byte) []byte {
	dst = AppendUint64(dst, uint64(len(s)))
	dst = append(dst, s...)
	return append(dst, zeros[:PadLen(uint64(len(s)))]...)
}

// AppendStrings appends a string list.
func AppendStrings(dst []byte, ss []string) []byte {
	dst = AppendUint64(dst, uint64(len(ss)))
	for _, s := range ss {
		dst = AppendString(dst, s)
	}
	return dst
}

// AppendBool appends b as u64 0 or 1.
func AppendBool(dst []byte, b bool) []byte {
	if b {
		return AppendUint64(dst, 1)
	}
	return AppendUint64(dst, 0)
}

// WritePadding writes the zero padding that follows n bytes of payload.
func WritePadding(w io.Writer, n uint64) error {
	if p := PadLen(n); p > 0 {
		_, err := w.Write(zeros[:p])
		return err
	}
	return nil
}

// Reader decodes wire primitives from an underlying stream. It buffers
// nothing beyond what each call needs, so the caller may interleave raw
// reads on the same stream (e.g. a NAR that follows a reply).
type Reader struct {
	r   io.Reader
	buf [8]byte
	// MaxString bounds every string read with ReadString; 0 means 64 MiB.
	MaxString uint64
	// MaxList bounds every list count; 0 means 1<<20 entries.
	MaxList uint64
}

// NewReader returns a Reader on r with default bounds.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Underlying returns the stream the Reader reads from.
func (r *Reader) Underlying() io.Reader { return r.r }

func (r *Reader) maxString() uint64 {
	if r.MaxString == 0 {
		return 64 << 20
	}
	return r.MaxString
}

func (r *Reader) maxList() uint64 {
	if r.MaxList == 0 {
		return 1 << 20
	}
	return r.MaxList
}

// ReadUint64 reads one u64.
func (r *Reader) ReadUint64() (uint64, error) {
	if _, err := io.ReadFull(r.r, r.buf[:]); err != nil {
		return 0, unexpected(err)
	}
	return binary.LittleEndian.Uint64(r.buf[:]), nil
}

// ReadBool reads a u64 and reports whether it is non-zero, as Nix does.
func (r *Reader) ReadBool() (bool, error) {
	v, err := r.ReadUint64()
	return v != 0, err
}

// ReadString reads a padded string of at most MaxString bytes.
func (r *Reader) ReadString() (string, error) {
	b, err := r.ReadBytesLimit(r.maxString(), "string")
	return string(b), err
}

// ReadBytesLimit reads a padded string of at most limit bytes; what names
// the field in the error.
func (r *Reader) ReadBytesLimit(limit uint64, what string) ([]byte, error) {
	n, err := r.ReadUint64()
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, &LengthError{What: what, Len: n, Limit: limit}
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.r, b); err != nil {
		return nil, unexpected(err)
	}
	if err := r.ReadPadding(n); err != nil {
		return nil, err
	}
	return b, nil
}

// ReadPadding reads and checks the zero padding after n bytes of payload.
func (r *Reader) ReadPadding(n uint64) error {
	p := PadLen(n)
	if p == 0 {
		return nil
	}
	if _, err := io.ReadFull(r.r, r.buf[:p]); err != nil {
		return unexpected(err)
	}
	for _, c := range r.buf[:p] {
		if c != 0 {
			return ErrNonZeroPadding
		}
	}
	return nil
}

// ReadStrings reads a string list bounded by MaxList entries.
func (r *Reader) ReadStrings() ([]string, error) {
	n, err := r.ReadUint64()
	if err != nil {
		return nil, err
	}
	if n > r.maxList() {
		return nil, &LengthError{What: "list", Len: n, Limit: r.maxList()}
	}
	out := make([]string, 0, min(n, 1024))
	for i := uint64(0); i < n; i++ {
		s, err := r.ReadString()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// unexpected turns a clean EOF in the middle of a value into
// io.ErrUnexpectedEOF: the peer closed while a value was due.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Decoder reads the fields of a message with a sticky error: after the
// first failure every read returns the zero value and Err keeps the error,
// so a message decoder reads like the wire layout and checks Err once.
type Decoder struct {
	R   *Reader
	Err error
}

// U64 reads a u64.
func (d *Decoder) U64() uint64 {
	if d.Err != nil {
		return 0
	}
	v, err := d.R.ReadUint64()
	d.Err = err
	return v
}

// Bool reads a u64 as a Boolean (non-zero is true).
func (d *Decoder) Bool() bool { return d.U64() != 0 }

// Str reads a string.
func (d *Decoder) Str() string {
	if d.Err != nil {
		return ""
	}
	s, err := d.R.ReadString()
	d.Err = err
	return s
}

// Strs reads a list of strings.
func (d *Decoder) Strs() []string {
	if d.Err != nil {
		return nil
	}
	ss, err := d.R.ReadStrings()
	d.Err = err
	return ss
}

// Count reads a u64 element count; one above limit is a *LengthError
// naming what.
func (d *Decoder) Count(what string, limit uint64) uint64 {
	n := d.U64()
	if d.Err == nil && n > limit {
		d.Err = &LengthError{What: what, Len: n, Limit: limit}
		return 0
	}
	return n
}

// FramedWriter writes a framed stream (2.8 serialise.hh FramedSink): each
// Write becomes one frame; Close writes the u64 0 terminator. It does not
// close the underlying writer.
type FramedWriter struct {
	w   io.Writer
	hdr [8]byte
}

// NewFramedWriter returns a FramedWriter on w.
func NewFramedWriter(w io.Writer) *FramedWriter { return &FramedWriter{w: w} }

func (f *FramedWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	binary.LittleEndian.PutUint64(f.hdr[:], uint64(len(p)))
	if _, err := f.w.Write(f.hdr[:]); err != nil {
		return 0, err
	}
	return f.w.Write(p)
}

// Close writes the terminating empty frame.
func (f *FramedWriter) Close() error {
	binary.LittleEndian.PutUint64(f.hdr[:], 0)
	_, err := f.w.Write(f.hdr[:])
	return err
}

// FramedReader reads a framed stream as one byte stream, ending with io.EOF
// at the terminating empty frame. Frames longer than MaxFrame are an error.
type FramedReader struct {
	r        io.Reader
	left     uint64
	done     bool
	hdr      [8]byte
	MaxFrame uint64 // 0 means 64 MiB
}

// NewFramedReader returns a FramedReader on r.
func NewFramedReader(r io.Reader) *FramedReader { return &FramedReader{r: r} }

func (f *FramedReader) Read(p []byte) (int, error) {
	for f.left == 0 {
		if f.done {
			return 0, io.EOF
		}
		if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
			return 0, unexpected(err)
		}
		n := binary.LittleEndian.Uint64(f.hdr[:])
		if n == 0 {
			f.done = true
			return 0, io.EOF
		}
		limit := f.MaxFrame
		if limit == 0 {
			limit = 64 << 20
		}
		if n > limit {
			return 0, &LengthError{What: "frame", Len: n, Limit: limit}
		}
		f.left = n
	}
	if uint64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= uint64(n)
	if err == io.EOF && f.left > 0 {
		err = io.ErrUnexpectedEOF
	} else if err == io.EOF {
		err = nil
	}
	return n, err
}
