package serve

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// decoder is wire's sticky-error Decoder with a cache of parsed store
// paths, so reply decoders read like the wire layout and check once.
type decoder struct {
	wire.Decoder
	// Store paths repeat within a reply (references, derivers), so
	// parsed paths are kept by their text; buf is reused for reading it.
	parsed map[string]store.Path
	buf    []byte
}

// maxPathLen bounds a store path string: the store dir, a 32-character
// hash, "-" and a name of at most 211 bytes.
const maxPathLen = len(store.StoreDir) + 1 + store.HashPartLen + 1 + store.MaxNameLen

// pathText reads a string expected to be a store path (or "") into d.buf
// without allocating.
func (d *decoder) pathText() []byte { return d.short(maxPathLen, "store path") }

// short reads a string of at most limit (≤ maxPathLen) bytes into d.buf;
// the result is valid until the next call.
func (d *decoder) short(limit int, what string) []byte {
	if d.Err != nil {
		return nil
	}
	n, err := d.R.ReadUint64()
	if err != nil {
		d.Err = err
		return nil
	}
	if n > uint64(limit) {
		d.Err = &wire.LengthError{What: what, Len: n, Limit: uint64(limit)}
		return nil
	}
	if cap(d.buf) < int(n) {
		d.buf = make([]byte, maxPathLen)
	}
	b := d.buf[:n]
	if _, err := io.ReadFull(d.R.Underlying(), b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		d.Err = err
		return nil
	}
	d.Err = d.R.ReadPadding(n)
	return b
}

// parsePath parses b as a full store path, through the cache.
func (d *decoder) parsePath(b []byte, what string) store.Path {
	if p, ok := d.parsed[string(b)]; ok {
		return p
	}
	p, err := store.ParsePath(string(b))
	if err != nil {
		d.fail("%s: %v", what, err)
		return store.Path{}
	}
	if d.parsed == nil {
		d.parsed = map[string]store.Path{}
	}
	d.parsed[string(b)] = p
	return p
}

func (d *decoder) fail(format string, a ...any) {
	if d.Err == nil {
		d.Err = fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, a...)...)
	}
}

// path reads a full store path.
func (d *decoder) path(what string) store.Path {
	b := d.pathText()
	if d.Err != nil {
		return store.Path{}
	}
	return d.parsePath(b, what)
}

// optPath reads a store path where "" means none.
func (d *decoder) optPath(what string) store.Path {
	b := d.pathText()
	if d.Err != nil || len(b) == 0 {
		return store.Path{}
	}
	return d.parsePath(b, what)
}

// paths reads a list of full store paths.
func (d *decoder) paths(what string) []store.Path {
	n := d.U64()
	if d.Err != nil {
		return nil
	}
	if max := d.R.MaxList; (max == 0 && n > 1<<20) || (max != 0 && n > max) {
		d.Err = &wire.LengthError{What: "list", Len: n, Limit: max}
		return nil
	}
	out := make([]store.Path, 0, min(n, 1024))
	for range n {
		p := d.path(what)
		if d.Err != nil {
			return nil
		}
		out = append(out, p)
	}
	return out
}

// readPaths decodes a reply that is a list of store paths.
func readPaths(r *wire.Reader, what string) ([]store.Path, error) {
	d := decoder{Decoder: wire.Decoder{R: r}}
	ps := d.paths(what)
	return ps, d.Err
}

// readPathInfos decodes a QueryPathInfos reply at minor version minor
// (2.8 nix-store.cc opServe cmdQueryPathInfos): entries "str path, str
// deriver, strlist refs, u64 downloadSize, u64 narSize, [≥2.4 str narHash,
// str ca, strlist sigs]" ended by an empty path. A server answers only for
// paths asked about, so more than max entries is a protocol error.
func readPathInfos(r *wire.Reader, minor uint64, max int) ([]*store.PathInfo, error) {
	d := decoder{Decoder: wire.Decoder{R: r}}
	var out []*store.PathInfo
	for {
		b := d.pathText()
		if d.Err != nil {
			return nil, d.Err
		}
		if len(b) == 0 {
			return out, nil
		}
		if len(out) >= max {
			return nil, fmt.Errorf("%w: more path infos than paths asked for (%d)", ErrProtocol, max)
		}
		p := d.parsePath(b, "path info")
		if d.Err != nil {
			return nil, d.Err
		}
		info := &store.PathInfo{Path: p}
		info.Deriver = d.optPath("deriver")
		info.References = d.paths("reference")
		d.U64() // downloadSize: the NAR size again
		info.NarSize = d.U64()
		if minor >= 4 {
			if h := d.short(128, "NAR hash"); len(h) > 0 && d.Err == nil {
				var err error
				if info.NarHash, err = parseNarHash(h); err != nil {
					d.fail("%s: %v", p, err)
				}
			}
			info.CA = d.Str()
			info.Sigs = d.Strs()
		}
		if d.Err != nil {
			return nil, d.Err
		}
		// Empty lists are nil, as in a PathInfo built by hand.
		if len(info.References) == 0 {
			info.References = nil
		}
		if len(info.Sigs) == 0 {
			info.Sigs = nil
		}
		store.SortPaths(info.References)
		out = append(out, info)
	}
}

// parseNarHash accepts the forms a server may send a SHA-256 in:
// "sha256:<nix32|base16>" (2.8 sends nix32) and SRI "sha256-<base64>".
func parseNarHash(s []byte) ([32]byte, error) {
	var h [32]byte
	if rest, ok := bytes.CutPrefix(s, []byte("sha256-")); ok {
		n, err := base64.StdEncoding.Decode(h[:], rest)
		if err != nil || n != 32 || base64.StdEncoding.EncodedLen(32) != len(rest) {
			return h, fmt.Errorf("bad SRI hash %q", s)
		}
		return h, nil
	}
	rest, ok := bytes.CutPrefix(s, []byte("sha256:"))
	if !ok {
		return h, fmt.Errorf("NAR hash %q is not sha256", s)
	}
	switch len(rest) {
	case 52:
		if n, err := nixbase32.Decode(h[:], rest); err != nil || n != 32 {
			return h, fmt.Errorf("bad nix32 hash %q", s)
		}
	case 64:
		if _, err := hex.Decode(h[:], rest); err != nil {
			return h, fmt.Errorf("bad base16 hash %q", s)
		}
	default:
		return h, fmt.Errorf("bad hash length in %q", s)
	}
	return h, nil
}

// readBuildResult decodes a serve BuildResult at minor version minor
// (2.8 nix-store.cc opServe cmdBuildDerivation): u64 status, str errorMsg,
// [≥2.3 u64 timesBuilt, u64 isNonDeterministic, u64 startTime, u64
// stopTime], [≥2.6 map DrvOutput id → Realisation JSON].
func readBuildResult(r *wire.Reader, minor uint64) (*store.BuildResult, error) {
	d := decoder{Decoder: wire.Decoder{R: r}}
	res := &store.BuildResult{Status: store.BuildStatus(d.U64()), ErrorMsg: stripANSI(d.Str())}
	if minor >= 3 {
		res.TimesBuilt = d.U64()
		res.IsNonDeterministic = d.U64() != 0
		res.StartTime = int64(d.U64())
		res.StopTime = int64(d.U64())
	}
	if minor >= 6 {
		n := d.U64()
		if d.Err == nil && n > 1<<16 {
			d.fail("%d built outputs", n)
		}
		for i := uint64(0); i < n && d.Err == nil; i++ {
			id, js := d.Str(), d.Str()
			if d.Err != nil {
				break
			}
			name, p, err := parseRealisation(id, js)
			if err != nil {
				d.fail("%v", err)
				break
			}
			if res.BuiltOutputs == nil {
				res.BuiltOutputs = map[string]store.Path{}
			}
			res.BuiltOutputs[name] = p
		}
	}
	if d.Err != nil {
		return nil, d.Err
	}
	return res, nil
}

// parseRealisation takes the output name from a DrvOutput id
// ("sha256:<hex>!out") and the output path from the Realisation JSON; the
// hash means nothing to a client (2.8 src/libstore/realisation.hh).
func parseRealisation(id, js string) (string, store.Path, error) {
	i := strings.LastIndexByte(id, '!')
	if i < 0 || !validOutputName(id[i+1:]) {
		return "", store.Path{}, fmt.Errorf("bad DrvOutput id %q", id)
	}
	var rz struct {
		OutPath string `json:"outPath"`
	}
	if err := json.Unmarshal([]byte(js), &rz); err != nil {
		return "", store.Path{}, fmt.Errorf("bad realisation for %q: %v", id, err)
	}
	var p store.Path
	var err error
	if strings.HasPrefix(rz.OutPath, "/") {
		p, err = store.ParsePath(rz.OutPath)
	} else {
		p, err = store.ParseBase(rz.OutPath)
	}
	if err != nil {
		return "", store.Path{}, fmt.Errorf("realisation %q: %v", id, err)
	}
	return id[i+1:], p, nil
}

// stripANSI removes the colour escapes Nix puts into messages.
func stripANSI(s string) string {
	if !strings.Contains(s, "\x1b[") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// validOutputName reports whether s can name an output: what may follow
// "-" in a store path name.
func validOutputName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("+-._?=", c) >= 0) {
			return false
		}
	}
	return true
}
