package drv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/nbuild/nbuild/store"
)

// ErrSyntax is wrapped by every error Parse returns.
var ErrSyntax = errors.New("drv: invalid derivation")

// ParseError reports where and why a .drv file was rejected. Offset is the
// byte offset in the input of the token (or string) at fault.
type ParseError struct {
	Offset int
	Msg    string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("drv: invalid derivation at offset %d: %s", e.Offset, e.Msg)
}

func (e *ParseError) Unwrap() error { return ErrSyntax }

// Parser parses .drv files. Its scratch space is reused between calls, so a
// loader parsing thousands of files allocates little; a Parser must not be
// used by two goroutines at once. The zero Parser is ready to use.
type Parser struct {
	// Intern, if set, is called for every string of the derivation with its
	// unescaped bytes (which it must not retain) and returns the string to
	// store, so a graph loader can share repeated paths and names between
	// derivations; of the paths held as store.Path (outputs and input
	// derivations) it gets the name. Without it every parsed Derivation
	// owns one copy of its file, and its strings point into that copy.
	Intern func([]byte) string

	// data is the text being parsed: without Intern a private copy of the
	// input, in which escaped strings are unescaped in place (an unescaped
	// string is never longer than its quoted form, so it fits where it was
	// and nothing parsed later is overwritten); with Intern the caller's
	// bytes, left untouched.
	data []byte
	// inPlace: data is the private copy, unescaped in place. views:
	// strings are views of data (Parse, ParseShared) rather than interned.
	// shared: ParseShared, whose results share data and the slabs below.
	inPlace, views, shared bool
	pos                    int
	// all receives every string of the derivation but platform, builder,
	// outputs and input derivation paths, in the order of the file: the
	// input derivations' output names, inputSrcs, args, 2 per env entry.
	// It becomes the result's storage (EnvVar is laid out as [2]string),
	// so each string is stored once.
	all     []string
	envAt   int // index in all of the first env entry
	outs    []Output
	inDrvs  []InputDrv
	prevDrv string // the last input derivation's path (text of data)
	spans   []int  // [start, end) into all of each input drv's outputs
	scratch []byte // unescaping area when data is not modified

	// ParseShared hands out results from these slabs (one allocation for
	// many derivations instead of three per derivation) and keeps the
	// unescaped strings in arena. Results keep each other's slabs alive.
	strSlab []string
	drvSlab []Derivation
	outSlab []Output
	inSlab  []InputDrv
	arena   []byte
}

// drvWithOutput is a Derivation and its one output, allocated together.
type drvWithOutput struct {
	d Derivation
	o [1]Output
}

var parserPool = sync.Pool{New: func() any { return new(Parser) }}

// Parse parses one .drv file (the ATerm text Nix 2.8 writes). It accepts
// exactly the canonical form Nix writes, so AppendATerm gives back the same
// bytes: sorted, duplicate-free outputs, inputs and env; only the escapes
// \" \\ \n \r \t; one kind of output. See Parser.Parse.
func Parse(data []byte) (*Derivation, error) {
	p := parserPool.Get().(*Parser)
	d, err := p.Parse(data)
	p.reset()
	parserPool.Put(p)
	return d, err
}

// reset drops the input and the result's storage. The scratch slices keep
// pointing at strings of earlier derivations until overwritten; clearing
// them costs more than the little memory that keeps alive.
func (p *Parser) reset() {
	p.data = nil
	p.all = nil
}

// The single allocation of strings in parse relies on this layout.
var _ = [1]struct{}{}[unsafe.Sizeof(EnvVar{})-2*unsafe.Sizeof("")]

// Parse parses one .drv file; the result does not alias data. Errors are
// *ParseError values wrapping ErrSyntax. Mirrors
// 2.8 src/libstore/derivations.cc parseDerivation and parseDerivationOutput,
// but is stricter where Nix is lenient about what it never writes (stray
// commas, unsorted or duplicate entries, non-canonical escapes).
func (p *Parser) Parse(data []byte) (*Derivation, error) {
	p.inPlace = p.Intern == nil
	p.views, p.shared = p.inPlace, false
	if p.inPlace {
		// append allocates without zeroing; this copy is the only one.
		p.data = append([]byte(nil), data...)
	} else {
		p.data = data
	}
	return p.run()
}

// ParseShared parses data as Parse does, but the result shares data's
// memory instead of copying it: every string that needs no unescaping is a
// view of data, so the caller hands data over and must not modify it while
// the result is in use. It is Parse without the copy of the whole file (a
// loader that reads each file into a fresh buffer has no use for another),
// and with the result's slices and unescaped strings carved out of blocks
// shared by the Parser's successive results, which keep each other's
// blocks alive. Intern, if set, takes precedence (then data is not
// retained either).
func (p *Parser) ParseShared(data []byte) (*Derivation, error) {
	p.inPlace = false
	p.views = p.Intern == nil
	p.shared = p.views
	p.data = data
	return p.run()
}

// Recycle declares every derivation ParseShared has returned so far dead:
// the Parser reuses their memory for the next ones. A loader that copies
// what it keeps out of each derivation before parsing the next calls it
// before each parse, and then parses without allocating.
func (p *Parser) Recycle() {
	clear(p.strSlab) // no stale pointers for the collector to follow
	clear(p.drvSlab)
	clear(p.outSlab)
	clear(p.inSlab)
	p.strSlab, p.drvSlab, p.outSlab, p.inSlab, p.arena = p.strSlab[:0], p.drvSlab[:0], p.outSlab[:0], p.inSlab[:0], p.arena[:0]
}

func (p *Parser) run() (*Derivation, error) {
	p.pos = 0
	if p.shared {
		// The rest of the slab, without counting the strings first: a
		// derivation with more strings than fit (rare) grows out of it.
		if cap(p.strSlab)-len(p.strSlab) < 1024 {
			p.strSlab = make([]string, 0, 16<<10)
		}
		k := len(p.strSlab)
		p.all = p.strSlab[k:k:cap(p.strSlab)]
	} else {
		// Every string has two quotes, so this never has to grow.
		p.all = make([]string, 0, bytes.Count(p.data, []byte{'"'})/2)
	}
	p.outs = p.outs[:0]
	p.inDrvs = p.inDrvs[:0]
	p.spans = p.spans[:0]
	d, err := p.parse()
	p.data = nil
	if err != nil {
		return nil, err
	}
	return d, nil
}

func (p *Parser) fail(off int, format string, a ...any) error {
	return &ParseError{Offset: off, Msg: fmt.Sprintf(format, a...)}
}

// expect consumes the literal tok.
func (p *Parser) expect(tok string) error {
	if len(p.data)-p.pos >= len(tok) && string(p.data[p.pos:p.pos+len(tok)]) == tok {
		p.pos += len(tok)
		return nil
	}
	return p.expectErr(tok)
}

// eat consumes the byte c if it is next. It and next are small enough to
// be inlined into the loops below, which report errors themselves.
func (p *Parser) eat(c byte) bool {
	if p.pos < len(p.data) && p.data[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

// eatListStart consumes ",[" between two fields.
func (p *Parser) eatListStart() bool {
	if p.pos+1 < len(p.data) && p.data[p.pos] == ',' && p.data[p.pos+1] == '[' {
		p.pos += 2
		return true
	}
	return false
}

func (p *Parser) expectErr(tok string) error {
	if len(p.data)-p.pos < len(tok) && strings.HasPrefix(tok, string(p.data[p.pos:])) {
		return p.fail(len(p.data), "unexpected end of input, expected %q", tok)
	}
	return p.fail(p.pos, "expected %q", tok)
}

// next moves to the next element of a list whose "[" has been consumed:
// it returns 1 when an element follows (consuming the "," before all but
// the first), 0 at the end of the list (consuming "]"), -1 on a syntax
// error, which listErr describes.
func (p *Parser) next(first bool) int {
	if p.pos < len(p.data) {
		switch c := p.data[p.pos]; {
		case c == ']':
			p.pos++
			return 0
		case first:
			return 1
		case c == ',':
			p.pos++
			return 1
		}
	}
	return -1
}

func (p *Parser) listErr() error {
	if p.pos >= len(p.data) {
		return p.fail(p.pos, "unexpected end of input in a list")
	}
	return p.fail(p.pos, "expected ',' or ']'")
}

// after reports whether s > prev, as sorted maps and sets must go on.
// Most neighbours differ in their first byte (env keys) or first eight
// after a common prefix (store paths), which it compares without calling
// the runtime's general compare.
func after(prev, s string) bool {
	if len(prev) >= 16 && len(s) >= 16 {
		a, b := unsafe.Pointer(unsafe.StringData(prev)), unsafe.Pointer(unsafe.StringData(s))
		for i := 0; i <= 8; i += 8 {
			x, y := bits.ReverseBytes64(load64(a, i)), bits.ReverseBytes64(load64(b, i))
			if x != y {
				return y > x
			}
		}
	} else if len(prev) > 0 && len(s) > 0 && prev[0] != s[0] {
		return s[0] > prev[0]
	}
	return s > prev
}

// orderErr reports key s (at offset off) not strictly after prev, the key
// of the previous entry of a sorted map or set (Nix's std::map order).
func (p *Parser) orderErr(prev, s string, off int, what string) error {
	if prev == s {
		return p.fail(off, "duplicate %s %q", what, s)
	}
	return p.fail(off, "%s %q out of order (Nix writes them sorted)", what, s)
}

// str returns data[i:j] as a string of the derivation: a view of the
// private copy, or the interned string.
func (p *Parser) str(i, j int) string {
	if p.views && i < j {
		return unsafe.String(&p.data[i], j-i)
	}
	return p.strSlow(i, j)
}

func (p *Parser) strSlow(i, j int) string {
	if p.views {
		return ""
	}
	return p.Intern(p.data[i:j])
}

// quoteErr reports a missing opening quote at p.pos.
func (p *Parser) quoteErr() error {
	if p.pos >= len(p.data) {
		return p.fail(p.pos, "unexpected end of input, expected a string")
	}
	return p.fail(p.pos, "expected a string")
}

// Strings are scanned eight bytes at a time (SWAR): zeroBytes(y) has the
// high bit set in the lowest zero byte of y (and perhaps in higher ones,
// which the scanners never look at), so the lowest set bit of the masks
// below marks the first byte that needs a closer look.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

func zeroBytes(y uint64) uint64 { return (y - lsb) &^ y & msb }

// rawMask flags '"' and '\\'.
func rawMask(x uint64) uint64 { return rawBits(x) & msb }

// escMask also flags bytes below 0x0E, which include LF, CR and TAB (the
// others are ordinary bytes and rare).
func escMask(x uint64) uint64 { return (rawBits(x) | ctlBits(x)) & msb }

// rawBits and ctlBits (bytes below 0x0E) are masks before the final
// & msb (their other bits are garbage), so that a mask made of several is
// cut to the flags once.
func rawBits(x uint64) uint64 {
	q, b := x^(lsb*'"'), x^(lsb*'\\')
	return (q-lsb)&^q | (b-lsb)&^b
}

func ctlBits(x uint64) uint64 { return (x - lsb*0x0E) &^ x }

// load64 and store64 access the 8 bytes at p+i, little-endian, without a
// bounds check: callers make sure they are in range.
func load64(p unsafe.Pointer, i int) uint64 {
	return binary.LittleEndian.Uint64((*[8]byte)(unsafe.Add(p, i))[:])
}

func store64(p unsafe.Pointer, i int, v uint64) {
	binary.LittleEndian.PutUint64((*[8]byte)(unsafe.Add(p, i))[:], v)
}

// scanRaw returns the index of the first '"' or '\\' at or after r, or
// len(data).
func scanRaw(data []byte, r int) int {
	sp := unsafe.Pointer(unsafe.SliceData(data))
	for ; r+8 <= len(data); r += 8 {
		if m := rawMask(load64(sp, r)); m != 0 {
			return r + bits.TrailingZeros64(m)>>3
		}
	}
	for ; r < len(data) && data[r] != '"' && data[r] != '\\'; r++ {
	}
	return r
}

// scanEsc returns the index of the first byte at or after r that may need
// a look: every '"', '\\', LF, CR and TAB is one, and so may be other bytes
// below 0x0E; len(data) if there is none.
func scanEsc(data []byte, r int) int {
	// Most strings are short: eight bytes at a time first, then the
	// vectorised IndexByte for long ones (scripts).
	sp := unsafe.Pointer(unsafe.SliceData(data))
	for lim := min(len(data)-8, r+64); r <= lim; r += 8 {
		if m := escMask(load64(sp, r)); m != 0 {
			return r + bits.TrailingZeros64(m)>>3
		}
	}
	if r+8 <= len(data) {
		return scanEscLong(data, r)
	}
	for ; r < len(data) && data[r] != '"' && data[r] != '\\' && data[r] >= 0x0E; r++ {
	}
	return r
}

// scanEscLong is scanEsc past the first 64 bytes (kept apart so that
// scanEsc's frame stays small).
func scanEscLong(data []byte, r int) int {
	end := len(data)
	for _, c := range [...]byte{'"', '\\', '\n', '\r', '\t'} {
		if k := bytes.IndexByte(data[r:end], c); k >= 0 {
			end = r + k
		}
	}
	return end
}

// view returns data[i:i+n] as a string of the derivation: a view of the
// input (or of Parse's private copy) when strings are views, else
// interned.
func (p *Parser) view(data []byte, i, n int) string {
	if p.views && n > 0 {
		return unsafe.String(&data[i], n)
	}
	return p.strSlow(i, i+n)
}

// rawString parses a string Nix writes without escaping (printUnquotedString:
// paths, output names, hash fields, platform). A backslash in it could not
// be read back the way it was written, so it is rejected. It returns the
// string and the offset of its opening quote.
func (p *Parser) rawString() (string, int, error) { return p.quoted(false) }

// escString parses a string written with printString (builder, args, env):
// only \" \\ \n \r \t, and no raw LF, CR or TAB.
func (p *Parser) escString() (string, int, error) { return p.quoted(true) }

// quoted is rawString (esc false) or escString. Most strings of a
// derivation end within 64 bytes, and the first byte rawMask (with esc,
// escMask) flags in them is the closing quote: the loop below finds it a
// word at a time without bounds checks (it runs only while a whole word
// after r is in range). Anything else (no quote at p.pos, an escape, a
// long string, too little input left to load words) carries on in the
// Long variants from the first flagged byte or from where the loop
// stopped.
func (p *Parser) quoted(esc bool) (string, int, error) {
	start := p.pos
	data := p.data
	r := start + 1
	if r+8 <= len(data) && data[start] == '"' {
		sp := unsafe.Pointer(unsafe.SliceData(data))
		lim := min(len(data)-8, start+57) // the last word loaded
		for {
			x := load64(sp, r)
			m := rawBits(x)
			if esc {
				m |= ctlBits(x)
			}
			if m &= msb; m != 0 {
				r += bits.TrailingZeros64(m) >> 3
				if *(*byte)(unsafe.Add(sp, r)) != '"' {
					break
				}
				p.pos = r + 1
				if p.views { // "" too (a view of length 0): no call for it
					return unsafe.String((*byte)(unsafe.Add(sp, start+1)), r-start-1), start, nil
				}
				return p.strSlow(start+1, r), start, nil
			}
			if r += 8; r > lim {
				break
			}
		}
	}
	if esc {
		return p.escStringLong(start, r)
	}
	return p.rawStringLong(start, r)
}

// storePath parses a string that must be a store path (input derivations
// and sources): rawString, then checkStorePath, in one pass for a valid
// path (see validPath); anything else goes the general way, for the same
// errors.
func (p *Parser) storePath() (string, int, error) {
	if s, off, ok := p.validPath(); ok {
		return s, off, nil
	}
	s, off, err := p.rawString()
	if err != nil {
		return "", off, err
	}
	if reason := checkStorePath(s); reason != "" {
		return "", off, p.fail(off, "invalid store path %q: %s", s, reason)
	}
	return s, off, nil
}

// validPath parses the string at p.pos if it is a valid store path, and
// reports whether it was (else it consumes nothing). A valid path has no
// quote or backslash before its closing quote, so it is scanned and
// checked in one pass: the prefix, the hash part by table, the closing
// quote found by words and the name before it by table.
func (p *Parser) validPath() (string, int, bool) {
	const prefix = `"/nix/store/`
	start := p.pos
	data := p.data
	h := start + len(prefix) // the hash part
	sp := unsafe.Pointer(unsafe.SliceData(data))
	if start >= 0 && h+33+8 <= len(data) && string(data[start:h]) == prefix && data[h+32] == '-' && isHashPart(sp, h) {
		name := h + 33
		lim := min(len(data)-8, name+211) // the last word loaded
		for i := name; i <= lim; i += 8 {
			if m := zeroBytes(load64(sp, i) ^ lsb*'"'); m != 0 {
				q := i + bits.TrailingZeros64(m)>>3
				if q > name && q-name <= 211 && isName(sp, name, q) {
					p.pos = q + 1
					if p.views {
						return unsafe.String((*byte)(unsafe.Add(sp, start+1)), q-start-1), start, true
					}
					return p.strSlow(start+1, q), start, true
				}
				break
			}
		}
	}
	return "", start, false
}

// validStorePath is validPath for the paths a Derivation keeps as
// store.Path (outputs and input derivations): the closing quote found by
// words, then store.ParseBase decodes the hash part, which checks its
// digits, and checks the name, so each byte is validated once. The path
// goes to *dst (no copies of it through results); its text is
// data[start+1:p.pos-1].
func (p *Parser) validStorePath(dst *store.Path) bool {
	const prefix = `"/nix/store/`
	start := p.pos
	data := p.data
	h := start + len(prefix) // the hash part
	sp := unsafe.Pointer(unsafe.SliceData(data))
	if start >= 0 && h+33+8 <= len(data) && string(data[start:h]) == prefix {
		name := h + 33
		lim := min(len(data)-8, name+211) // the last word loaded
		for i := name; i <= lim; i += 8 {
			if m := zeroBytes(load64(sp, i) ^ lsb*'"'); m != 0 {
				// ParseBase checks the '-' and the name's length.
				q := i + bits.TrailingZeros64(m)>>3
				path, err := store.ParseBase(unsafe.String((*byte)(unsafe.Add(sp, h)), q-h))
				if err != nil {
					break
				}
				if !p.views {
					// The name checked above, interned: NewPath cannot fail.
					path, _ = store.NewPath(path.Digest(), p.Intern(data[q-len(path.Name()):q]))
				}
				*dst = path
				p.pos = q + 1
				return true
			}
		}
	}
	return false
}

// pathText returns the text of the path validStorePath took, which began at
// start: a view of the input valid until the parse returns.
func (p *Parser) pathText(start int) string {
	return unsafe.String(&p.data[start+1], p.pos-start-2)
}

// rawStringLong finishes rawString from data[r], the first byte that may
// end the string.
func (p *Parser) rawStringLong(start, r int) (string, int, error) {
	data := p.data
	if start >= len(data) || data[start] != '"' {
		return "", start, p.quoteErr()
	}
	q := scanRaw(data, r)
	if q >= len(data) {
		return "", start, p.fail(start, "unterminated string")
	}
	if data[q] == '\\' {
		return "", start, p.fail(q, "escape sequence in a field Nix writes unescaped")
	}
	p.pos = q + 1
	return p.view(data, start+1, q-start-1), start, nil
}

// escStringLong finishes escString from data[r], the first byte that may
// need a look.
func (p *Parser) escStringLong(start, r int) (string, int, error) {
	data := p.data
	if start >= len(data) || data[start] != '"' {
		return "", start, p.quoteErr()
	}
	for {
		r = scanEsc(data, r)
		if r >= len(data) {
			return "", start, p.fail(start, "unterminated string")
		}
		switch data[r] {
		case '"':
			p.pos = r + 1
			return p.view(data, start+1, r-start-1), start, nil
		case '\\':
			return p.unescape(start, r)
		case '\n', '\r', '\t':
			return "", start, p.rawErr(r)
		}
		r++ // another control byte: an ordinary one
	}
}

func (p *Parser) rawErr(r int) error {
	return p.fail(r, "raw control character %q in a string Nix writes escaped", p.data[r])
}

// unescapes maps the byte after a backslash to the byte it stands for; 0
// for an escape Nix never writes.
var unescapes = [256]byte{'"': '"', '\\': '\\', 'n': '\n', 'r': '\r', 't': '\t'}

// unescape finishes a string with escapes: data[start] is its opening quote
// and data[r] its first backslash. The text is unescaped in place with
// Parse's private copy, at the end of the arena with ParseShared, into
// p.scratch with Intern. An unescaped string is never longer than the rest
// of the input, so the destination is made that big (plus a word) and is
// written a word at a time.
func (p *Parser) unescape(start, r int) (string, int, error) {
	if p.inPlace {
		return p.unescapeInPlace(start, r)
	}
	data := p.data
	need := len(data) - start + 8
	var dst []byte
	var base int
	if p.views {
		if cap(p.arena)-len(p.arena) < need {
			p.arena = makeNoZero(max(need, 64<<10))
		}
		base = len(p.arena)
		dst = p.arena[:cap(p.arena)]
	} else {
		if cap(p.scratch) < need {
			p.scratch = make([]byte, need)
		}
		dst = p.scratch[:cap(p.scratch)]
	}
	w := base + copy(dst[base:], data[start+1:r])
	w, q, ok := unescapeTo(dst, w, data, r)
	if !ok {
		return "", start, p.unescapeErr(start, q)
	}
	p.pos = q + 1
	if !p.views {
		return p.Intern(dst[:w]), start, nil
	}
	p.arena = p.arena[:w]
	if w == base {
		return "", start, nil
	}
	return unsafe.String(&p.arena[base], w-base), start, nil
}

// makeNoZero returns an empty slice with room for n bytes whose contents
// are left as the allocator found them: the arena is written before it is
// read, and zeroing it first (as make does) costs a pass over memory that
// is not yet in cache. strings.Builder.Grow is the standard library's one
// way to such memory (bytealg.MakeNoZero); its buffer is reached through
// the one byte written to it.
func makeNoZero(n int) []byte {
	var b strings.Builder
	b.Grow(n)
	b.WriteByte(0)
	return unsafe.Slice(unsafe.StringData(b.String()), n)[:0]
}

// unescapeTo decodes an escaped string from its backslash at data[r] to its
// closing quote into dst at w. It returns the new w and the offset of the
// closing quote, or ok == false and the offset of the fault (see
// unescapeErr). dst may be data itself if r-w >= 8 (Parse's private copy):
// then every store ends at or before the read position, so nothing is
// overwritten before it is read.
//
// Strings a builder script long have an escape every few bytes, so the
// flagged bytes of each 8-byte word are handled from one mask instead of
// rescanning the text after each escape: the text from the read position
// on is stored as a word at every step, and the next step overwrites what
// did not belong. The loop reads and
// writes through unsafe pointers (no bounds checks): it runs only while
// r+16 <= len(data), so data[r:r+9] is in range, and while dst has room
// for len(data)-r+8 more bytes, which stays true because each word writes
// no more than it reads; the rest goes through the checked loop below.
func unescapeTo(dst []byte, w int, data []byte, r int) (int, int, bool) {
	if len(dst)-w >= len(data)-r+8 {
		dp, sp := unsafe.Pointer(unsafe.SliceData(dst)), unsafe.Pointer(unsafe.SliceData(data))
		for r+16 <= len(data) {
			x := load64(sp, r)
			m := escMask(x)
			if m == 0 {
				store64(dp, w, x)
				w, r = w+8, r+8
				continue
			}
			// The flagged bytes of x one by one, lowest first. Their
			// bytes, the escaped ones and the text between them are
			// read back from data rather than kept in registers (the
			// loop spilled them): a store at w never reaches the read
			// position r+s, since w+8 <= r+s holds for Parse's in-place
			// unescaping (r-w >= 8 on entry, and w falls further behind
			// with each escape) and trivially for distinct buffers.
			s := uint(0) // bytes of x consumed; 8 or 9 once an escape ends past it
			for {
				j := uint(bits.TrailingZeros64(m)) >> 3 & 7
				store64(dp, w, load64(sp, r+int(s)))
				w += int(j - s)
				m &= m - 1
				b := *(*byte)(unsafe.Add(sp, r+int(j)))
				if b == '\\' {
					c := unescapes[*(*byte)(unsafe.Add(sp, r+int(j)+1))]
					if c == 0 {
						return w, r + int(j), false
					}
					*(*byte)(unsafe.Add(dp, w)) = c
					s = j + 2
					m &^= 0x8000 << (8 * j) // the escaped byte's flag
				} else if b == '"' {
					return w, r + int(j), true
				} else if b == '\n' || b == '\r' || b == '\t' {
					return w, r + int(j), false
				} else {
					s = j + 1 // another control byte (or a false alarm): ordinary
				}
				w++
				if m == 0 {
					break
				}
			}
			if s < 8 {
				store64(dp, w, load64(sp, r+int(s)))
				w += int(8 - s)
				r += 8
			} else {
				r += int(s)
			}
		}
	}
	for r < len(data) {
		switch b := data[r]; b {
		case '\\':
			if r+1 >= len(data) {
				return w, r, false
			}
			c := unescapes[data[r+1]]
			if c == 0 {
				return w, r, false
			}
			dst[w] = c
			w, r = w+1, r+2
		case '"':
			return w, r, true
		case '\n', '\r', '\t':
			return w, r, false
		default:
			dst[w] = b
			w, r = w+1, r+1
		}
	}
	return w, r, false
}

// unescapeErr describes the fault unescapeTo stopped at, offset r of the
// string opened at start.
func (p *Parser) unescapeErr(start, r int) error {
	data := p.data
	switch {
	case r >= len(data) || data[r] == '\\' && r+1 == len(data):
		return p.fail(start, "unterminated string")
	case data[r] == '\\':
		return p.fail(r, "invalid escape sequence \\%c (Nix writes only \\\" \\\\ \\n \\r \\t)", data[r+1])
	}
	return p.rawErr(r)
}

// unescapeInPlace is unescape for Parse's private copy: the text moves
// left over itself (w never passes the read index r), and a word is
// written whole only where nothing is read again.
func (p *Parser) unescapeInPlace(start, r int) (string, int, error) {
	data := p.data
	dst, w := data, r
	for {
		// data[r] is a backslash. Once eight escapes have made room,
		// the word loop can take over.
		if r-w >= 8 {
			w, q, ok := unescapeTo(data, w, data, r)
			if !ok {
				return "", start, p.unescapeErr(start, q)
			}
			p.pos = q + 1
			return p.str(start+1, w), start, nil
		}
		if r+1 >= len(data) {
			return "", start, p.fail(start, "unterminated string")
		}
		c := unescapes[data[r+1]]
		if c == 0 {
			return "", start, p.fail(r, "invalid escape sequence \\%c (Nix writes only \\\" \\\\ \\n \\r \\t)", data[r+1])
		}
		dst[w] = c
		w++
		r += 2
		// Copy up to the next byte that needs a look.
		for {
			for r+8 <= len(data) {
				x := binary.LittleEndian.Uint64(data[r:])
				if m := escMask(x); m != 0 {
					k := bits.TrailingZeros64(m) >> 3
					if r-w >= 8 {
						// Bytes past k land where nothing is read again.
						binary.LittleEndian.PutUint64(dst[w:], x)
					} else {
						for j := 0; j < k; j++ {
							dst[w+j] = data[r+j]
						}
					}
					w, r = w+k, r+k
					break
				}
				binary.LittleEndian.PutUint64(dst[w:], x)
				w, r = w+8, r+8
			}
			if r+8 > len(data) {
				k := scanEsc(data, r)
				w += copy(dst[w:], data[r:k])
				r = k
			}
			if r >= len(data) {
				return "", start, p.fail(start, "unterminated string")
			}
			switch data[r] {
			case '"':
				p.pos = r + 1
				return p.str(start+1, w), start, nil
			case '\\':
			case '\n', '\r', '\t':
				return "", start, p.rawErr(r)
			default:
				dst[w] = data[r]
				w++
				r++
				continue
			}
			break // at a backslash
		}
	}
}

func (p *Parser) parse() (*Derivation, error) {
	if bytes.HasPrefix(p.data, []byte("DrvWithVersion(")) {
		return nil, p.fail(0, "DrvWithVersion (dynamic derivations) is not supported by Nix 2.8")
	}
	if err := p.expect("Derive(["); err != nil {
		return nil, err
	}
	if err := p.parseOutputs(); err != nil {
		return nil, err
	}
	if !p.eatListStart() {
		return nil, p.expectErr(",[")
	}
	if err := p.parseInputDrvs(); err != nil {
		return nil, err
	}
	if !p.eatListStart() {
		return nil, p.expectErr(",[")
	}
	srcStart := len(p.all)
	if err := p.parseSortedList(true); err != nil {
		return nil, err
	}
	srcEnd := len(p.all)
	if !p.eat(',') {
		return nil, p.expectErr(",")
	}
	platform, _, err := p.rawString()
	if err != nil {
		return nil, err
	}
	if !p.eat(',') {
		return nil, p.expectErr(",")
	}
	builder, _, err := p.escString()
	if err != nil {
		return nil, err
	}
	if !p.eatListStart() {
		return nil, p.expectErr(",[")
	}
	for first := true; ; first = false {
		if n := p.next(first); n <= 0 {
			if n < 0 {
				return nil, p.listErr()
			}
			break
		}
		s, _, err := p.escString()
		if err != nil {
			return nil, err
		}
		p.all = append(p.all, s)
	}
	argsEnd := len(p.all)
	if !p.eatListStart() {
		return nil, p.expectErr(",[")
	}
	if err := p.parseEnv(); err != nil {
		return nil, err
	}
	if !p.eat(')') {
		return nil, p.expectErr(")")
	}
	if p.pos != len(p.data) {
		return nil, p.fail(p.pos, "trailing data after the derivation")
	}

	var d *Derivation
	if p.shared {
		if len(p.drvSlab) == cap(p.drvSlab) {
			p.drvSlab = make([]Derivation, 0, 64)
		}
		p.drvSlab = p.drvSlab[:len(p.drvSlab)+1]
		d = &p.drvSlab[len(p.drvSlab)-1]
		d.Platform, d.Builder = platform, builder
		n := len(p.outs)
		if cap(p.outSlab)-len(p.outSlab) < n {
			p.outSlab = make([]Output, 0, max(n, 256))
		}
		k := len(p.outSlab)
		p.outSlab = append(p.outSlab, p.outs...)
		d.Outputs = p.outSlab[k : k+n : k+n]
	} else if len(p.outs) == 1 {
		// Most derivations have one output: it comes with the
		// Derivation, in one allocation.
		x := &drvWithOutput{d: Derivation{Platform: platform, Builder: builder}, o: [1]Output{p.outs[0]}}
		d = &x.d
		d.Outputs = x.o[:]
	} else {
		d = &Derivation{Platform: platform, Builder: builder, Outputs: slices.Clone(p.outs)}
	}
	if n := len(p.inDrvs); n > 0 && p.shared {
		if cap(p.inSlab)-len(p.inSlab) < n {
			p.inSlab = make([]InputDrv, 0, max(n, 512))
		}
		k := len(p.inSlab)
		p.inSlab = append(p.inSlab, p.inDrvs...)
		d.InputDrvs = p.inSlab[k : k+n : k+n]
	} else if n > 0 {
		d.InputDrvs = append([]InputDrv(nil), p.inDrvs...)
	}
	// Env and the string lists share one allocation: EnvVar is laid out
	// exactly as [2]string.
	all := p.all
	p.all = nil
	k := len(p.strSlab)
	if p.shared && unsafe.SliceData(all) == unsafe.SliceData(p.strSlab[k:cap(p.strSlab)]) {
		// Still in the slab: its unused part goes to the next derivation.
		p.strSlab = p.strSlab[:k+len(all)]
		all = p.strSlab[k : k+len(all) : k+len(all)]
	} else if cap(all)-len(all)-4*len(p.outs)-len(p.inDrvs) > len(all)/4+8 {
		// Many escaped quotes (scripts) made the estimate (which counts
		// the outputs' and input derivations' strings too) loose; do not
		// keep the slack alive with the derivation.
		all = slices.Clone(all)
	}
	envAt := p.envAt
	if nEnv := (len(all) - envAt) / 2; nEnv > 0 {
		d.Env = unsafe.Slice((*EnvVar)(unsafe.Pointer(&all[envAt])), nEnv)
	}
	strs := all[:envAt:envAt]
	for k := range d.InputDrvs {
		d.InputDrvs[k].Outputs = strs[p.spans[2*k]:p.spans[2*k+1]:p.spans[2*k+1]]
	}
	if srcEnd > srcStart {
		d.InputSrcs = strs[srcStart:srcEnd:srcEnd]
	}
	if argsEnd > srcEnd {
		d.Args = strs[srcEnd:argsEnd:argsEnd]
	}
	return d, nil
}

// parseSortedList parses the rest of a list of unescaped strings after its
// "[" into p.all, requiring strictly increasing elements (a set, as Nix
// keeps it); paths additionally must be store paths.
func (p *Parser) parseSortedList(paths bool) error {
	base := len(p.all)
	for first := true; ; first = false {
		if n := p.next(first); n <= 0 {
			if n < 0 {
				return p.listErr()
			}
			return nil
		}
		var s string
		var off int
		var err error
		if paths {
			s, off, err = p.storePath()
		} else {
			s, off, err = p.rawString()
		}
		if err != nil {
			return err
		}
		if n := len(p.all); n > base && !after(p.all[n-1], s) {
			return p.orderErr(p.all[n-1], s, off, "entry")
		}
		p.all = append(p.all, s)
	}
}

func (p *Parser) parseOutputs() error {
	var kind OutputKind
	var floatAlgo HashAlgo
	for first := true; ; first = false {
		if n := p.next(first); n <= 0 {
			if n < 0 {
				return p.listErr()
			}
			break
		}
		start := p.pos
		if !p.eat('(') {
			return p.expectErr("(")
		}
		var o Output
		var offs [4]int
		var err error
		if o.Name, offs[0], err = p.rawString(); err != nil {
			return err
		}
		if !p.eat(',') {
			return p.expectErr(",")
		}
		// Most paths are valid ones, checked as they are scanned.
		var badPath string // a path that is not a valid store path
		offs[1] = p.pos
		if !p.validStorePath(&o.Path) {
			var s string
			if s, offs[1], err = p.rawString(); err != nil {
				return err
			}
			if o.Path, err = store.ParsePath(s); err != nil {
				o.Path, badPath = store.Path{}, s
			}
		}
		if !p.eat(',') {
			return p.expectErr(",")
		}
		if o.HashAlgo, offs[2], err = p.rawString(); err != nil {
			return err
		}
		if !p.eat(',') {
			return p.expectErr(",")
		}
		if o.Hash, offs[3], err = p.rawString(); err != nil {
			return err
		}
		if !p.eat(')') {
			return p.expectErr(")")
		}
		if o.Name == "" {
			return p.fail(offs[0], "empty output name")
		}
		if n := len(p.outs); n > 0 && !after(p.outs[n-1].Name, o.Name) {
			return p.orderErr(p.outs[n-1].Name, o.Name, offs[0], "output")
		}
		k, algo, msg, field := classifyOutputPath(&o, badPath)
		if msg != "" {
			return p.fail(offs[field], "output %q: %s", o.Name, msg)
		}
		switch {
		case kind == 0:
			kind, floatAlgo = k, algo
		case kind != k:
			return p.fail(start, "output %q is %s but earlier outputs are %s: can't mix derivation output types", o.Name, k, kind)
		case k == FixedOutput:
			return p.fail(start, "only one fixed output is allowed")
		case k == Floating && algo != floatAlgo:
			return p.fail(offs[2], "output %q: all floating outputs must use the same hash type", o.Name)
		}
		if k == FixedOutput && o.Name != "out" {
			return p.fail(offs[0], "single fixed output must be named \"out\"")
		}
		p.outs = append(p.outs, o)
	}
	if len(p.outs) == 0 {
		return p.fail(p.pos-1, "a derivation must have at least one output")
	}
	return nil
}

// classifyOutput decides an output's kind from its four fields, as
// 2.8 parseDerivationOutput does, and says which field (1 path, 2 hashAlgo,
// 3 hash) is wrong if any.
func classifyOutput(o *Output) (kind OutputKind, algo HashAlgo, msg string, field int) {
	return classifyOutputPath(o, "")
}

// classifyOutputPath is classifyOutput for a parsed output whose path
// field, if not "", was badPath, which is not a valid store path (o.Path is
// then zero).
func classifyOutputPath(o *Output, badPath string) (kind OutputKind, algo HashAlgo, msg string, field int) {
	hasPath := !o.Path.IsZero() || badPath != ""
	if o.HashAlgo == "" {
		if o.Hash != "" {
			return 0, 0, "hash without a hash algorithm", 3
		}
		if !hasPath {
			return Deferred, 0, "", 0
		}
		if badPath != "" {
			return 0, 0, "invalid store path: " + checkStorePath(badPath), 1
		}
		return InputAddressed, 0, "", 0
	}
	method, algo, err := parseMethodAlgo(o.HashAlgo)
	if err != nil {
		return 0, 0, err.Error(), 2
	}
	switch o.Hash {
	case "impure":
		if hasPath {
			return 0, 0, "impure output with a path", 1
		}
		return Impure, algo, "", 0
	case "":
		if hasPath {
			return 0, 0, "floating content-addressed output with a path", 1
		}
		return Floating, algo, "", 0
	}
	if method == Text && algo != SHA256 {
		return 0, 0, "text hashing requires sha256", 2
	}
	// The hex Nix writes is checked without decoding (which allocates);
	// anything else gets decodeHash's verdict and message.
	if len(o.Hash) != 2*algo.Size() || !isHex(o.Hash) {
		if _, err := decodeHash(o.Hash, algo); err != nil {
			return 0, 0, err.Error(), 3
		}
	}
	if badPath != "" {
		return 0, 0, "invalid store path: " + checkStorePath(badPath), 1
	}
	return FixedOutput, algo, "", 0
}

func (p *Parser) parseInputDrvs() error {
	for first := true; ; first = false {
		if n := p.next(first); n <= 0 {
			if n < 0 {
				return p.listErr()
			}
			return nil
		}
		if !p.eat('(') {
			return p.expectErr("(")
		}
		// The entry is filled in place (an error leaves it behind, to be
		// dropped by the next parse).
		n := len(p.inDrvs)
		p.inDrvs = append(p.inDrvs, InputDrv{})
		in := &p.inDrvs[n]
		off := p.pos
		var text string
		if p.validStorePath(&in.Path) {
			text = p.pathText(off)
		} else {
			// Another way for the same errors (or a valid path too near
			// the end of the input for validStorePath).
			var err error
			if text, off, err = p.storePath(); err != nil {
				return err
			}
			if in.Path, err = store.ParsePath(text); err != nil {
				return p.fail(off, "%v", err)
			}
		}
		if n > 0 && !after(p.prevDrv, text) {
			return p.orderErr(p.prevDrv, text, off, "input derivation")
		}
		p.prevDrv = text
		if !p.eatListStart() {
			return p.expectErr(",[")
		}
		lstart := p.pos
		begin := len(p.all)
		if data := p.data; lstart+7 <= len(data) && string(data[lstart:lstart+7]) == `"out"])` {
			// Most input derivations give just their "out".
			p.all = append(p.all, p.view(data, lstart+1, 3))
			p.pos = lstart + 7
		} else {
			if err := p.parseSortedList(false); err != nil {
				return err
			}
			if len(p.all) == begin {
				return p.fail(lstart, "input derivation %q with no outputs", text)
			}
			if !p.eat(')') {
				return p.expectErr(")")
			}
		}
		p.spans = append(p.spans, begin, len(p.all))
	}
}

func (p *Parser) parseEnv() error {
	p.envAt = len(p.all)
	var prev string // the previous entry's key
	open := false   // the entry's "(" is consumed
	n := p.next(true)
	for n > 0 {
		if !open && !p.eat('(') {
			return p.expectErr("(")
		}
		k, off, err := p.escString()
		if err != nil {
			return err
		}
		// Neighbouring keys mostly differ in their first byte.
		if len(p.all) > p.envAt && (len(prev) == 0 || len(k) == 0 || prev[0] >= k[0]) && !after(prev, k) {
			return p.orderErr(prev, k, off, "environment variable")
		}
		if !p.eat(',') {
			return p.expectErr(",")
		}
		v, _, err := p.escString()
		if err != nil {
			return err
		}
		p.all = append(p.all, k, v)
		prev = k
		// Between two entries "),(" in one go; eat and next do the rest.
		if data, pos := p.data, p.pos; pos >= 0 && pos+3 <= len(data) && string(data[pos:pos+3]) == "),(" {
			p.pos, open = pos+3, true
			continue
		}
		if !p.eat(')') {
			return p.expectErr(")")
		}
		n, open = p.next(false), false
	}
	if n < 0 {
		return p.listErr()
	}
	return nil
}

// inRange flags the bytes of x in [lo, hi], for x without bytes >= 0x80.
func inRange(x uint64, lo, hi byte) uint64 {
	return (x + lsb*uint64(0x80-lo)) &^ (x + lsb*uint64(0x7F-hi)) & msb
}

// isHex reports whether s is all hex digits, as hex.DecodeString accepts
// them (either case); eight at a time (x|0x20 maps only 'A'-'F' and
// 'a'-'f' onto 'a'-'f').
func isHex(s string) bool {
	sp := unsafe.Pointer(unsafe.StringData(s))
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := load64(sp, i)
		if x&msb != 0 || inRange(x, '0', '9')|inRange(x|lsb*0x20, 'a', 'f') != msb {
			return false
		}
	}
	bad := false
	for ; i < len(s); i++ {
		c := s[i]
		bad = bad || !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F')
	}
	return !bad
}

// nix32 marks the characters of Nix's base32 alphabet; storeName those
// allowed in a store path name (2.8 src/libstore/path.cc checkName).
var nix32, storeName = func() (n, s [256]bool) {
	for _, c := range "0123456789abcdfghijklmnpqrsvwxyz" {
		n[c] = true
	}
	for c := 0; c < 256; c++ {
		s[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("+-._?=", byte(c)) >= 0
	}
	return n, s
}()

// pathChars has bit 1 set for a byte allowed in a store path's name and
// bit 2 for one of Nix's base32 digits, so a hash part or a name is checked
// with an AND per byte and one branch.
var pathChars = func() (t [256]uint8) {
	for c := range t {
		if storeName[c] {
			t[c] |= 1
		}
		if nix32[c] {
			t[c] |= 2
		}
	}
	return t
}()

// checkStorePath validates a full store path the way store.ParsePath does,
// without allocating; it returns why s is rejected, or "".
func checkStorePath(s string) string {
	const prefix = "/nix/store/"
	if len(s) >= len(prefix)+34 && len(s) <= len(prefix)+33+211 && s[:len(prefix)] == prefix && s[len(prefix)+32] == '-' {
		sp := unsafe.Pointer(unsafe.StringData(s))
		if isHashPart(sp, len(prefix)) && isName(sp, len(prefix)+33, len(s)) {
			return ""
		}
	}
	return checkStorePathSlow(s)
}

// isHashPart reports whether the 32 bytes at p+i are Nix's base32
// digits: by table, four bytes a step (fewer instructions than range tests
// on words).
func isHashPart(p unsafe.Pointer, i int) bool {
	hash := uint8(2)
	for end := i + 32; i < end; i += 4 {
		b := (*[4]byte)(unsafe.Add(p, i))
		hash &= pathChars[b[0]] & pathChars[b[1]] & pathChars[b[2]] & pathChars[b[3]]
	}
	return hash != 0
}

// isName reports whether the bytes at p+i up to p+end are all allowed in a
// store path's name: four bytes a step, one AND chain per step instead of
// per byte.
func isName(p unsafe.Pointer, i, end int) bool {
	name := uint8(1)
	for ; i+4 <= end; i += 4 {
		b := (*[4]byte)(unsafe.Add(p, i))
		name &= pathChars[b[0]] & pathChars[b[1]] & pathChars[b[2]] & pathChars[b[3]]
	}
	for ; i < end; i++ {
		name &= pathChars[*(*byte)(unsafe.Add(p, i))]
	}
	return name != 0
}

// checkStorePathSlow says what is wrong with a path checkStorePath rejects.
func checkStorePathSlow(s string) string {
	const prefix = "/nix/store/"
	if !strings.HasPrefix(s, prefix) {
		return "not in /nix/store"
	}
	base := s[len(prefix):]
	if len(base) < 34 {
		return "too short"
	}
	for i := 0; i < 32; i++ {
		if !nix32[base[i]] {
			return "invalid character in hash part"
		}
	}
	if base[32] != '-' {
		return "no '-' after the hash part"
	}
	name := base[33:]
	if len(name) > 211 {
		return "name longer than 211 bytes"
	}
	for i := 0; i < len(name); i++ {
		if !storeName[name[i]] {
			return "invalid character in name"
		}
	}
	return ""
}
