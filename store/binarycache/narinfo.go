// Package binarycache reads and writes file:// binary caches as Nix 2.8
// does (2.8 src/libstore/binary-cache-store.cc, nar-info.cc,
// local-binary-cache-store.cc).
//
// Vocabulary:
//   - narinfo: the <hash>.narinfo text file describing one store path (its
//     NAR hash and size, references, deriver, signatures, content address)
//     and where its compressed NAR lives (URL, Compression, FileHash,
//     FileSize). Writing the narinfo is what makes a path present.
//   - nix-cache-info: the cache's own small "Key: value" header file.
//   - listing: the optional <hash>.ls JSON table of contents of a NAR.
//   - secret and public keys: Ed25519 keys in Nix's "name:base64" text form;
//     a Sig line is "name:base64(signature of the path's fingerprint)".
package binarycache

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nbuild/nbuild/store"
)

// ErrCorruptNarInfo is wrapped by every narinfo parse error.
var ErrCorruptNarInfo = errors.New("binarycache: corrupt narinfo")

// NarInfoError reports why a narinfo was rejected and on which line
// (1-based; 0 when the problem is the file as a whole).
type NarInfoError struct {
	Line   int
	Field  string
	Reason string
}

func (e *NarInfoError) Error() string {
	switch {
	case e.Line == 0:
		return "binarycache: corrupt narinfo: " + e.Reason
	case e.Field == "":
		return fmt.Sprintf("binarycache: corrupt narinfo: line %d: %s", e.Line, e.Reason)
	}
	return fmt.Sprintf("binarycache: corrupt narinfo: line %d: %s: %s", e.Line, e.Field, e.Reason)
}

func (e *NarInfoError) Unwrap() error { return ErrCorruptNarInfo }

// NarInfo is the content of a .narinfo file (2.8 src/libstore/nar-info.hh).
type NarInfo struct {
	StorePath   store.Path
	URL         string // relative to the cache root, e.g. "nar/<filehash>.nar.zst"
	Compression string // "xz", "zstd", "none", …; "bzip2" when the file has none
	FileHash    [32]byte
	HasFileHash bool // 2.8 always writes FileHash; newer Nix may omit it
	FileSize    uint64
	NarHash     [32]byte
	NarSize     uint64
	References  []store.Path // sorted by base name, unique; may include StorePath
	Deriver     store.Path   // zero when unknown
	System      string
	Sigs        []string // sorted, unique
	CA          string   // rendered content address, "" for none
}

// PathInfo returns the store.PathInfo the narinfo describes.
func (n *NarInfo) PathInfo() *store.PathInfo {
	return &store.PathInfo{
		Path:       n.StorePath,
		Deriver:    n.Deriver,
		NarHash:    n.NarHash,
		NarSize:    n.NarSize,
		References: slices.Clone(n.References),
		Sigs:       slices.Clone(n.Sigs),
		CA:         n.CA,
	}
}

// ParseNarInfo parses a narinfo with 2.8's rules (NarInfo::NarInfo):
// "Key: value" lines each ending in '\n'; StorePath, URL, NarHash and a
// non-zero NarSize required; a missing Compression means bzip2;
// "Deriver: unknown-deriver" means none; unknown keys ignored; a second
// non-empty References line or a second CA line is an error; hashes in any
// of Nix's encodings (base16, nix32, base64, SRI) with an algorithm
// prefix.
//
// It is stricter than 2.8 where 2.8 accepts garbage silently: the
// separator must be exactly ": " (2.8 skips any one byte), other
// single-valued keys may not repeat (2.8 keeps the last), sizes are plain
// decimal, NarHash and FileHash must be SHA-256, and a nix32 hash must be
// canonical.
func ParseNarInfo(data []byte) (*NarInfo, error) {
	n := &NarInfo{}
	seen := map[string]bool{}
	var haveRefs bool
	line := 0
	for pos := 0; pos < len(data); {
		line++
		eol := bytes.IndexByte(data[pos:], '\n')
		if eol < 0 {
			return nil, &NarInfoError{Line: line, Reason: "missing newline at end of file"}
		}
		text := string(data[pos : pos+eol])
		pos += eol + 1
		name, value, ok := strings.Cut(text, ": ")
		if !ok || strings.ContainsRune(name, ':') {
			return nil, &NarInfoError{Line: line, Reason: fmt.Sprintf("%q is not a \"Key: value\" line", text)}
		}
		fail := func(reason string) error { return &NarInfoError{Line: line, Field: name, Reason: reason} }
		switch name {
		case "StorePath", "URL", "Compression", "FileHash", "FileSize", "NarHash", "NarSize", "Deriver", "System":
			if seen[name] {
				return nil, fail("repeated")
			}
			seen[name] = true
		}
		var err error
		switch name {
		case "StorePath":
			if n.StorePath, err = store.ParsePath(value); err != nil {
				return nil, fail(err.Error())
			}
		case "URL":
			n.URL = value
		case "Compression":
			n.Compression = value
		case "FileHash":
			if n.FileHash, err = parseSHA256(value); err != nil {
				return nil, fail(err.Error())
			}
			n.HasFileHash = true
		case "FileSize":
			if n.FileSize, err = parseSize(value); err != nil {
				return nil, fail(err.Error())
			}
		case "NarHash":
			if n.NarHash, err = parseSHA256(value); err != nil {
				return nil, fail(err.Error())
			}
		case "NarSize":
			if n.NarSize, err = parseSize(value); err != nil {
				return nil, fail(err.Error())
			}
		case "References":
			if haveRefs && len(n.References) > 0 {
				return nil, fail("repeated")
			}
			haveRefs = true
			for _, base := range strings.Split(value, " ") {
				if base == "" {
					continue // 2.8 tokenizes on runs of spaces
				}
				p, err := store.ParseBase(base)
				if err != nil {
					return nil, fail(err.Error())
				}
				n.References = append(n.References, p)
			}
		case "Deriver":
			if value != "unknown-deriver" {
				if n.Deriver, err = store.ParseBase(value); err != nil {
					return nil, fail(err.Error())
				}
			}
		case "System":
			n.System = value
		case "Sig":
			n.Sigs = append(n.Sigs, value)
		case "CA":
			if seen["CA"] {
				return nil, fail("repeated")
			}
			seen["CA"] = true
			if n.CA, err = ParseContentAddress(value); err != nil {
				return nil, fail(err.Error())
			}
		}
	}
	if n.Compression == "" {
		n.Compression = "bzip2"
	}
	switch {
	case n.StorePath.IsZero():
		return nil, &NarInfoError{Reason: "no StorePath"}
	case !seen["NarHash"]:
		return nil, &NarInfoError{Reason: "no NarHash"}
	case n.URL == "":
		return nil, &NarInfoError{Reason: "no URL"}
	case n.NarSize == 0:
		return nil, &NarInfoError{Reason: "no NarSize or NarSize 0"}
	}
	store.SortPaths(n.References)
	n.References = slices.Compact(n.References)
	slices.Sort(n.Sigs)
	n.Sigs = slices.Compact(n.Sigs)
	return n, nil
}

// MarshalText formats n as 2.8 writes it (NarInfo::to_string).
func (n *NarInfo) MarshalText() ([]byte, error) {
	return n.AppendText(nil), nil
}

// AppendText appends the narinfo text of n to dst, in 2.8's field order,
// with "References: " keeping its trailing space when there are none.
// References and Sigs are written sorted and unique whatever their order
// in n. FileHash is written when HasFileHash, FileSize also when not 0.
func (n *NarInfo) AppendText(dst []byte) []byte {
	dst = append(dst, "StorePath: "...)
	dst = append(dst, n.StorePath.String()...)
	dst = append(dst, "\nURL: "...)
	dst = append(dst, n.URL...)
	dst = append(dst, "\nCompression: "...)
	dst = append(dst, n.Compression...)
	if n.HasFileHash {
		dst = append(dst, "\nFileHash: sha256:"...)
		dst = append(dst, nixbase32.EncodeToString(n.FileHash[:])...)
	}
	if n.HasFileHash || n.FileSize != 0 {
		dst = append(dst, "\nFileSize: "...)
		dst = strconv.AppendUint(dst, n.FileSize, 10)
	}
	dst = append(dst, "\nNarHash: sha256:"...)
	dst = append(dst, nixbase32.EncodeToString(n.NarHash[:])...)
	dst = append(dst, "\nNarSize: "...)
	dst = strconv.AppendUint(dst, n.NarSize, 10)
	dst = append(dst, "\nReferences: "...)
	refs := n.References
	if !slices.IsSortedFunc(refs, store.Path.Compare) {
		refs = slices.Clone(refs)
		store.SortPaths(refs)
	}
	for i, r := range refs {
		if i > 0 && r == refs[i-1] {
			continue
		}
		if i > 0 {
			dst = append(dst, ' ')
		}
		dst = append(dst, r.Base()...)
	}
	dst = append(dst, '\n')
	if !n.Deriver.IsZero() {
		dst = append(dst, "Deriver: "...)
		dst = append(dst, n.Deriver.Base()...)
		dst = append(dst, '\n')
	}
	if n.System != "" {
		dst = append(dst, "System: "...)
		dst = append(dst, n.System...)
		dst = append(dst, '\n')
	}
	sigs := n.Sigs
	if !slices.IsSorted(sigs) {
		sigs = slices.Clone(sigs)
		slices.Sort(sigs)
	}
	for i, s := range sigs {
		if i > 0 && s == sigs[i-1] {
			continue
		}
		dst = append(dst, "Sig: "...)
		dst = append(dst, s...)
		dst = append(dst, '\n')
	}
	if n.CA != "" {
		dst = append(dst, "CA: "...)
		dst = append(dst, n.CA...)
		dst = append(dst, '\n')
	}
	return dst
}

func parseSize(s string) (uint64, error) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, fmt.Errorf("%q is not a decimal size", s)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a decimal size", s)
	}
	return v, nil
}

func parseSHA256(s string) ([32]byte, error) {
	var h [32]byte
	algo, digest, err := parseHash(s)
	if err != nil {
		return h, err
	}
	if algo != "sha256" {
		return h, fmt.Errorf("hash %q: want sha256, not %s", s, algo)
	}
	copy(h[:], digest)
	return h, nil
}

var hashSizes = map[string]int{"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}

// parseHash parses "<algo>:<base16|nix32|base64>" or SRI "<algo>-<base64>"
// (2.8 src/libutil/hash.cc Hash::parseAnyPrefixed).
func parseHash(s string) (algo string, digest []byte, err error) {
	algo, rest, ok := strings.Cut(s, ":")
	sri := false
	if !ok {
		if algo, rest, ok = strings.Cut(s, "-"); !ok {
			return "", nil, fmt.Errorf("hash %q has no algorithm prefix", s)
		}
		sri = true
	}
	size, ok := hashSizes[algo]
	if !ok {
		return "", nil, fmt.Errorf("hash %q: unknown algorithm %q", s, algo)
	}
	switch {
	case sri:
		if len(rest) != base64.StdEncoding.EncodedLen(size) {
			return "", nil, fmt.Errorf("SRI hash %q has the wrong length", s)
		}
		digest, err = base64.StdEncoding.DecodeString(rest)
	case len(rest) == hex.EncodedLen(size):
		digest, err = hex.DecodeString(rest)
	case len(rest) == nixbase32.EncodedLen(size):
		digest, err = nixbase32.DecodeString(rest)
		if err == nil && nixbase32.EncodeToString(digest) != rest {
			err = errors.New("non-canonical nix32")
		}
	case len(rest) == base64.StdEncoding.EncodedLen(size):
		digest, err = base64.StdEncoding.DecodeString(rest)
	default:
		return "", nil, fmt.Errorf("hash %q has the wrong length for %s", s, algo)
	}
	if err != nil || len(digest) != size {
		return "", nil, fmt.Errorf("hash %q is not valid: %v", s, err)
	}
	return algo, digest, nil
}

// ParseContentAddress parses a rendered content address and returns it in
// 2.8's canonical form (hash in nix32): "text:sha256:<hash>" or
// "fixed:[r:]<algo>:<hash>" (2.8 src/libstore/content-address.cc
// parseContentAddress, renderContentAddress).
func ParseContentAddress(s string) (string, error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok {
		return "", fmt.Errorf("content address %q has no prefix", s)
	}
	var prefix string
	switch kind {
	case "text":
		prefix = "text:"
	case "fixed":
		prefix = "fixed:"
		if r, ok := strings.CutPrefix(rest, "r:"); ok {
			prefix, rest = "fixed:r:", r
		}
	default:
		return "", fmt.Errorf("content address %q: unknown kind %q", s, kind)
	}
	algo, digest, err := parseHash(rest)
	if err != nil {
		return "", fmt.Errorf("content address %q: %v", s, err)
	}
	if kind == "text" && algo != "sha256" {
		return "", fmt.Errorf("content address %q: text hashes must be sha256", s)
	}
	return prefix + algo + ":" + nixbase32.EncodeToString(digest), nil
}

// CacheInfo is the content of nix-cache-info.
type CacheInfo struct {
	StoreDir      string
	WantMassQuery bool
	Priority      int // 0 when absent
}

// ParseCacheInfo parses nix-cache-info as 2.8 does
// (BinaryCacheStore::init): lines without ':' are ignored, values are
// trimmed, unknown keys are ignored.
func ParseCacheInfo(data []byte) (*CacheInfo, error) {
	ci := &CacheInfo{}
	for _, line := range strings.Split(string(data), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch name {
		case "StoreDir":
			ci.StoreDir = value
		case "WantMassQuery":
			ci.WantMassQuery = value == "1"
		case "Priority":
			p, err := strconv.Atoi(value)
			if err != nil {
				return nil, fmt.Errorf("binarycache: nix-cache-info: Priority %q is not an integer", value)
			}
			ci.Priority = p
		}
	}
	return ci, nil
}

// AppendText appends ci in nix-cache-info form; WantMassQuery and Priority
// only when set, as 2.8's file:// caches leave them out.
func (ci *CacheInfo) AppendText(dst []byte) []byte {
	dst = append(dst, "StoreDir: "...)
	dst = append(dst, ci.StoreDir...)
	dst = append(dst, '\n')
	if ci.WantMassQuery {
		dst = append(dst, "WantMassQuery: 1\n"...)
	}
	if ci.Priority != 0 {
		dst = append(dst, "Priority: "...)
		dst = strconv.AppendInt(dst, int64(ci.Priority), 10)
		dst = append(dst, '\n')
	}
	return dst
}
