package copy

import (
	"io"
	"slices"
)

// isNix32 marks the bytes of Nix's base-32 alphabet, the characters of a
// store path's hash part.
var isNix32 = func() (t [256]bool) {
	for _, c := range []byte("0123456789abcdfghijklmnpqrsvwxyz") {
		t[c] = true
	}
	return t
}()

// hashLen is the length of a store path's hash part.
const hashLen = 32

// rewriter replaces, in the bytes written through it, every occurrence of
// a key of m (the hash part of an old store path) by its value (the hash
// part of the new path that succeeds it), as Nix rewrites hash parts: any
// occurrence of the 32 characters counts, wherever it is. Keys and values
// are hashLen bytes, so the output has the input's length. Close writes
// what it still holds back.
//
// Scanning skips ahead as Nix's reference scanner does: a window of 32
// bytes can hold a hash only if its last byte is in the alphabet, so most
// binary data is passed over 32 bytes at a time.
type rewriter struct {
	w   io.Writer
	m   map[string]string
	buf []byte
	ok  int // buf[start:ok] are known to be in the alphabet
}

func newRewriter(w io.Writer, m map[string]string) *rewriter {
	return &rewriter{w: w, m: m}
}

func (r *rewriter) Write(p []byte) (int, error) {
	if len(r.m) == 0 {
		return r.w.Write(p)
	}
	r.buf = append(r.buf, p...)
	i := rewriteHashes(r.buf, r.m, &r.ok, nil)
	if _, err := r.w.Write(r.buf[:i]); err != nil {
		return 0, err
	}
	r.buf = append(r.buf[:0], r.buf[i:]...)
	r.ok = max(r.ok-i, 0)
	return len(p), nil
}

// Close writes the held-back tail; it does not close the underlying
// writer.
func (r *rewriter) Close() error {
	if len(r.buf) == 0 {
		return nil
	}
	_, err := r.w.Write(r.buf)
	r.buf = r.buf[:0]
	r.ok = 0
	return err
}

// rewriteHashes replaces in b the keys of m by their values and returns
// how many leading bytes of b are final: no window starting there or later
// was looked at, so the rest must be scanned again with more bytes after
// it. *ok carries how far b is known to be alphabet from one call to the
// next. Each key found is added to hits, if not nil.
func rewriteHashes(b []byte, m map[string]string, ok *int, hits map[string]bool) int {
	i, good := 0, *ok
	for i+hashLen <= len(b) {
		if !isNix32[b[i+hashLen-1]] {
			i += hashLen
			continue
		}
		good = max(good, i)
		for good < i+hashLen-1 && isNix32[b[good]] {
			good++
		}
		if good < i+hashLen-1 { // b[good] is not in the alphabet
			i = good + 1
			continue
		}
		good = i + hashLen
		if v, hit := m[string(b[i:i+hashLen])]; hit {
			if hits != nil {
				hits[v] = true
			}
			copy(b[i:], v)
			i += hashLen
			continue
		}
		i++
	}
	*ok = good
	return i
}

// scanner records which keys of a set of hash parts occur in the bytes
// written through it, as Nix's reference scanner does; Close scans the
// held-back tail.
type scanner struct {
	set  map[string]string // identity: each hash part maps to itself
	hits map[string]bool
	buf  []byte
	ok   int
}

func newScanner(set map[string]string) *scanner {
	return &scanner{set: set, hits: map[string]bool{}}
}

func (s *scanner) Write(p []byte) (int, error) {
	if len(s.set) == 0 {
		return len(p), nil
	}
	s.buf = append(s.buf, p...)
	i := rewriteHashes(s.buf, s.set, &s.ok, s.hits)
	s.buf = append(s.buf[:0], s.buf[i:]...)
	s.ok = max(s.ok-i, 0)
	return len(p), nil
}

// Found returns the hash parts seen, sorted; it first scans what is held
// back.
func (s *scanner) Found() []string {
	rewriteHashes(s.buf, s.set, new(int), s.hits)
	s.buf = s.buf[:0]
	found := make([]string, 0, len(s.hits))
	for h := range s.hits {
		found = append(found, h)
	}
	slices.Sort(found)
	return found
}
