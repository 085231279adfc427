// Package store defines the vocabulary every nbuild store speaks: a store
// Path (a comparable digest and name), PathInfo (what a store knows about a
// valid path), the small interfaces a build engine consumes, and the
// sentinel errors shared by all implementations.
//
// A store path is "<StoreDir>/<hash>-<name>": hash is 32 characters of Nix's
// base32 (20 bytes), name is 1 to 211 bytes of [A-Za-z0-9+-._?=]. Path keeps
// the decoded 20-byte digest and the name, so it can be a map key and
// compared with ==.
package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// StoreDir is the only store directory nbuild supports; chroot stores keep
// this logical directory and place it under another root.
const StoreDir = "/nix/store"

// DaemonSocket is where the machine's nix-daemon listens by default (Nix
// 2.8's settings.nixDaemonSocketFile); store/location reads
// NIX_DAEMON_SOCKET_PATH, which overrides it.
const DaemonSocket = "/nix/var/nix/daemon-socket/socket"

// DigestSize is the size in bytes of a store path's hash part.
const DigestSize = 20

// HashPartLen is the length of the base32 hash part of a store path.
const HashPartLen = 32

// MaxNameLen is the longest name Nix accepts (2.8 src/libstore/path.cc).
const MaxNameLen = 211

// ErrInvalidPath is wrapped by every store path parse error.
var ErrInvalidPath = errors.New("store: invalid store path")

// PathError reports a malformed store path and why it was rejected.
type PathError struct {
	Path   string
	Reason string
}

func (e *PathError) Error() string {
	return fmt.Sprintf("store: invalid store path %q: %s", e.Path, e.Reason)
}

func (e *PathError) Unwrap() error { return ErrInvalidPath }

// Path is a store path: a 20-byte digest and a name. The zero Path is not a
// valid path; use IsZero to test for it.
type Path struct {
	digest [DigestSize]byte
	name   string
}

// NewPath builds a Path from its parts, validating the name.
func NewPath(digest [DigestSize]byte, name string) (Path, error) {
	if reason := checkName(name); reason != "" {
		return Path{}, &PathError{Path: EncodeNix32(digest[:]) + "-" + name, Reason: reason}
	}
	return Path{digest: digest, name: name}, nil
}

// ParsePath parses a full store path such as "/nix/store/<hash>-<name>".
// A trailing "/..." inside the path is rejected: use SplitPath for that.
func ParsePath(s string) (Path, error) {
	base, ok := strings.CutPrefix(s, StoreDir+"/")
	if !ok {
		return Path{}, &PathError{Path: s, Reason: "not in " + StoreDir}
	}
	p, err := ParseBase(base)
	if err != nil {
		return Path{}, &PathError{Path: s, Reason: err.(*PathError).Reason}
	}
	return p, nil
}

// SplitPath parses a path that may point inside a store object, such as
// "/nix/store/<hash>-foo/bin/foo", and returns the store path and the rest
// ("/bin/foo", or "").
func SplitPath(s string) (Path, string, error) {
	base, ok := strings.CutPrefix(s, StoreDir+"/")
	if !ok {
		return Path{}, "", &PathError{Path: s, Reason: "not in " + StoreDir}
	}
	rest := ""
	if i := strings.IndexByte(base, '/'); i >= 0 {
		base, rest = base[:i], base[i:]
	}
	p, err := ParseBase(base)
	if err != nil {
		return Path{}, "", &PathError{Path: s, Reason: err.(*PathError).Reason}
	}
	return p, rest, nil
}

// ParseBase parses a store path's base name "<hash>-<name>".
func ParseBase(base string) (Path, error) {
	if len(base) < HashPartLen+2 {
		return Path{}, &PathError{Path: base, Reason: "too short"}
	}
	if base[HashPartLen] != '-' {
		return Path{}, &PathError{Path: base, Reason: "no '-' after the hash part"}
	}
	var p Path
	if !decodeDigest(&p.digest, base[:HashPartLen]) {
		err := decodeHashPart(p.digest[:], base[:HashPartLen]) // for the message
		return Path{}, &PathError{Path: base, Reason: err.Error()}
	}
	p.name = base[HashPartLen+1:]
	if len(p.name) > MaxNameLen || !validName(p.name) {
		return Path{}, &PathError{Path: base, Reason: checkName(p.name)}
	}
	return p, nil
}

// MustParsePath is ParsePath for constants in tests and examples; it panics
// on error and must not be used on input.
func MustParsePath(s string) Path {
	p, err := ParsePath(s)
	if err != nil {
		panic(err)
	}
	return p
}

func decodeHashPart(dst []byte, s string) error {
	// Nix base32 (2.8 src/libutil/hash.cc): the last character holds the
	// lowest five bits. A store path's 32 characters are 160 bits, the 20
	// bytes exactly: decodeDigest.
	if len(s) == HashPartLen && len(dst) == DigestSize {
		if decodeDigest((*[DigestSize]byte)(dst), s) {
			return nil
		}
	}
	// Other lengths, and the error: one character at a time. dst is
	// zeroed first: it is OR-ed into.
	clear(dst)
	for n := 0; n < len(s); n++ {
		c := s[len(s)-n-1]
		digit := nix32Value[c]
		if digit == 0xff {
			return fmt.Errorf("invalid character %q in hash part", c)
		}
		b := n * 5
		i, j := b/8, uint(b%8)
		if i >= len(dst) {
			return errors.New("invalid hash part: too long")
		}
		dst[i] |= digit << j
		carry := digit >> (8 - j)
		if i+1 < len(dst) {
			dst[i+1] |= carry
		} else if carry != 0 {
			return errors.New("invalid hash part: bits beyond the digest")
		}
	}
	return nil
}

// decodeDigest decodes a 32-character hash part into dst and reports
// whether every character was a digit (dst is then garbage). Written out:
// each character is a load at a constant offset, a table load, a shift and
// an OR, with no index arithmetic or bounds check; each group of 8
// characters from the end is 40 bits, 5 whole bytes. A non-digit's table
// value is all ones, which sets the bits above 40 whatever its shift.
func decodeDigest(dst *[DigestSize]byte, s string) bool {
	_ = s[HashPartLen-1]
	t := &nix32Word
	var bad uint64
	v := t[s[31]] | t[s[30]]<<5 | t[s[29]]<<10 | t[s[28]]<<15 |
		t[s[27]]<<20 | t[s[26]]<<25 | t[s[25]]<<30 | t[s[24]]<<35
	bad |= v
	binary.LittleEndian.PutUint32(dst[0:4], uint32(v))
	dst[4] = byte(v >> 32)
	v = t[s[23]] | t[s[22]]<<5 | t[s[21]]<<10 | t[s[20]]<<15 |
		t[s[19]]<<20 | t[s[18]]<<25 | t[s[17]]<<30 | t[s[16]]<<35
	bad |= v
	binary.LittleEndian.PutUint32(dst[5:9], uint32(v))
	dst[9] = byte(v >> 32)
	v = t[s[15]] | t[s[14]]<<5 | t[s[13]]<<10 | t[s[12]]<<15 |
		t[s[11]]<<20 | t[s[10]]<<25 | t[s[9]]<<30 | t[s[8]]<<35
	bad |= v
	binary.LittleEndian.PutUint32(dst[10:14], uint32(v))
	dst[14] = byte(v >> 32)
	v = t[s[7]] | t[s[6]]<<5 | t[s[5]]<<10 | t[s[4]]<<15 |
		t[s[3]]<<20 | t[s[2]]<<25 | t[s[1]]<<30 | t[s[0]]<<35
	bad |= v
	binary.LittleEndian.PutUint32(dst[15:19], uint32(v))
	dst[19] = byte(v >> 32)
	return bad>>40 == 0
}

// nix32Word is nix32Value as words, with all ones for a non-digit.
var nix32Word = func() (t [256]uint64) {
	for i, v := range nix32Value {
		t[i] = uint64(v)
		if v == 0xff {
			t[i] = ^uint64(0)
		}
	}
	return t
}()

// nix32Value maps a character of Nix's base32 alphabet to its value, and
// every other byte to 0xff.
var nix32Value = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(Nix32Alphabet); i++ {
		t[Nix32Alphabet[i]] = byte(i)
	}
	return t
}()

// checkName mirrors 2.8 src/libstore/path.cc checkName and returns the reason
// a name is rejected, or "".
func checkName(name string) string {
	if name == "" {
		return "empty name"
	}
	if len(name) > MaxNameLen {
		return fmt.Sprintf("name longer than %d bytes", MaxNameLen)
	}
	if validName(name) {
		return ""
	}
	for i := 0; i < len(name); i++ {
		if nameChars[name[i]] == 0 {
			return fmt.Sprintf("invalid character %q in name", name[i])
		}
	}
	return "" // not reached
}

// validName reports whether every byte of name is allowed in a name. One
// table load and AND per byte, no branch: every drv parse, graph load and
// snapshot checks tens of thousands of names.
func validName(name string) bool {
	ok := uint8(1)
	rest := name
	for len(rest) >= 4 {
		// Four a step, one AND chain: fewer instructions per byte (and
		// no bounds checks, indexing rest from 0).
		ok &= nameChars[rest[0]] & nameChars[rest[1]] & nameChars[rest[2]] & nameChars[rest[3]]
		rest = rest[4:]
	}
	for i := 0; i < len(rest); i++ {
		ok &= nameChars[rest[i]]
	}
	return ok != 0
}

// nameChars is 1 for the bytes a store path name may contain (2.8
// src/libstore/path.cc checkName): letters, digits and "+-._?=".
var nameChars = func() (t [256]uint8) {
	for c := range t {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("+-._?=", byte(c)) >= 0 {
			t[c] = 1
		}
	}
	return t
}()

// IsZero reports whether p is the zero Path.
func (p Path) IsZero() bool { return p.name == "" }

// Digest returns the 20-byte hash part.
func (p Path) Digest() [DigestSize]byte { return p.digest }

// Name returns the name part, e.g. "hello-2.12.drv".
func (p Path) Name() string { return p.name }

// HashPart returns the 32-character base32 hash part.
func (p Path) HashPart() string { return EncodeNix32(p.digest[:]) }

// Base returns "<hash>-<name>".
func (p Path) Base() string {
	var buf [HashPartLen + 1 + MaxNameLen]byte
	return string(p.AppendBase(buf[:0]))
}

// AppendBase appends p's base name to b: Base without an allocation when b
// has room (for map lookups by string(b) over many paths).
func (p Path) AppendBase(b []byte) []byte {
	b = AppendNix32(b, p.digest[:])
	b = append(b, '-')
	return append(b, p.name...)
}

// String returns the full path "/nix/store/<hash>-<name>"; "" for the zero Path.
func (p Path) String() string {
	if p.IsZero() {
		return ""
	}
	var buf [len(StoreDir) + 1 + HashPartLen + 1 + MaxNameLen]byte
	return string(p.AppendTo(buf[:0]))
}

// AppendTo appends the full path, as String returns it, to b (nothing for
// the zero Path): writers of many paths (ATerm, JSON, hashes) render each
// without an allocation.
func (p Path) AppendTo(b []byte) []byte {
	if p.IsZero() {
		return b
	}
	b = append(b, StoreDir+"/"...)
	return p.AppendBase(b)
}

// IsDerivation reports whether p names a store derivation (".drv").
func (p Path) IsDerivation() bool { return strings.HasSuffix(p.name, ".drv") }

// Compare orders paths as Nix's StorePathSet does: byte-wise on the base
// name, which is the same as byte-wise on the full path.
func (p Path) Compare(q Path) int {
	return strings.Compare(p.Base(), q.Base())
}

// SortPaths sorts paths in Nix's StorePathSet order.
func SortPaths(ps []Path) {
	keys := make([]string, len(ps))
	for i, p := range ps {
		keys[i] = p.Base()
	}
	sort.Sort(byKey{ps, keys})
}

type byKey struct {
	ps   []Path
	keys []string
}

func (s byKey) Len() int           { return len(s.ps) }
func (s byKey) Less(i, j int) bool { return s.keys[i] < s.keys[j] }
func (s byKey) Swap(i, j int) {
	s.ps[i], s.ps[j] = s.ps[j], s.ps[i]
	s.keys[i], s.keys[j] = s.keys[j], s.keys[i]
}

// MakePath computes a store path from its fingerprint parts, as
// 2.8 src/libstore/store-api.cc makeStorePath: the digest is the SHA-256 of
// "<typ>:sha256:<hex(inner)>:/nix/store:<name>" XOR-folded to 20 bytes.
func MakePath(typ string, inner [sha256.Size]byte, name string) (Path, error) {
	h := sha256.New()
	h.Write([]byte(typ))
	h.Write([]byte(":sha256:"))
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], inner[:])
	h.Write(hx[:])
	h.Write([]byte(":" + StoreDir + ":"))
	h.Write([]byte(name))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	var d [DigestSize]byte
	for i, b := range sum {
		d[i%DigestSize] ^= b
	}
	return NewPath(d, name)
}

// MakeTextPath computes the path of a text object (a .drv file, or
// builtins.toFile) with contents hash inner and the given references, as
// 2.8 makeTextPath: type "text:<ref>:<ref>..." with references sorted.
func MakeTextPath(name string, inner [sha256.Size]byte, refs []Path) (Path, error) {
	return MakePath(typeWithRefs("text", refs, false), inner, name)
}

// MakeSourcePath computes the path of a NAR-hashed (recursive sha256)
// content-addressed object with references and an optional self reference.
func MakeSourcePath(name string, narHash [sha256.Size]byte, refs []Path, self bool) (Path, error) {
	return MakePath(typeWithRefs("source", refs, self), narHash, name)
}

func typeWithRefs(typ string, refs []Path, self bool) string {
	strs := make([]string, len(refs))
	for i, r := range refs {
		strs[i] = r.String()
	}
	sort.Strings(strs)
	var b strings.Builder
	b.WriteString(typ)
	for _, s := range strs {
		b.WriteByte(':')
		b.WriteString(s)
	}
	if self {
		b.WriteString(":self")
	}
	return b.String()
}
