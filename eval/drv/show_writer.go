package drv

import (
	"errors"
	"io"
)

// ShowWriter writes what ShowJSON returns one derivation at a time, so a
// closure of any size streams to w through a small buffer. The caller gives
// the derivations in ShowJSON's order (sorted by path) and calls Close,
// which writes the end of the object; Close does not close w.
type ShowWriter struct {
	w     io.Writer
	buf   []byte
	count int
	err   error
}

// showFlush is how much output ShowWriter gathers before writing it.
const showFlush = 64 << 10

// NewShowWriter returns a ShowWriter writing to w.
func NewShowWriter(w io.Writer) *ShowWriter {
	return &ShowWriter{w: w, buf: append(make([]byte, 0, showFlush+8<<10), '{')}
}

// Write adds the derivation d at the full .drv path path.
func (s *ShowWriter) Write(path string, d *Derivation) error {
	if s.err != nil {
		return s.err
	}
	if s.count > 0 {
		s.buf = append(s.buf, ',')
	}
	s.count++
	if s.buf, s.err = AppendShowEntry(s.buf, path, d); s.err != nil {
		return s.err
	}
	if len(s.buf) >= showFlush {
		s.flush()
	}
	return s.err
}

func (s *ShowWriter) flush() {
	if s.err == nil && len(s.buf) > 0 {
		_, s.err = s.w.Write(s.buf)
	}
	s.buf = s.buf[:0]
}

// Close writes the end of the object and what is still buffered.
func (s *ShowWriter) Close() error {
	if s.err != nil {
		return s.err
	}
	if s.count > 0 {
		s.buf = append(s.buf, '\n')
	}
	s.buf = append(s.buf, '}', '\n')
	s.flush()
	if s.err == nil {
		s.err = errShowClosed
		return nil
	}
	return s.err
}

var errShowClosed = errors.New("drv: ShowWriter is closed")

// AppendShowEntry appends the member `"PATH": {...}` of ShowJSON's object
// for one derivation, indented as inside that object and without the
// separating comma.
func AppendShowEntry(dst []byte, path string, d *Derivation) ([]byte, error) {
	w := jsonWriter{b: dst, depth: 1, empty: true}
	err := w.derivation(path, d)
	return w.b, err
}
