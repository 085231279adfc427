package drv

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"
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
	// derivations. Without it every parsed Derivation owns one buffer that
	// holds all its strings.
	Intern func([]byte) string

	data    []byte
	pos     int
	buf     []byte // string bytes of the derivation being parsed
	outs    []Output
	inDrvs  []InputDrv
	spans   []int // [start, end) into strs of each input drv's outputs
	strs    []string
	env     []EnvVar
	scratch []byte // unescaping area when Intern is set
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

func (p *Parser) reset() {
	p.data = nil
	p.buf = nil
	clear(p.outs)
	clear(p.inDrvs)
	clear(p.strs)
	clear(p.env)
}

// Parse parses one .drv file; the result does not alias data. Errors are
// *ParseError values wrapping ErrSyntax. Mirrors
// 2.8 src/libstore/derivations.cc parseDerivation and parseDerivationOutput,
// but is stricter where Nix is lenient about what it never writes (stray
// commas, unsorted or duplicate entries, non-canonical escapes).
func (p *Parser) Parse(data []byte) (*Derivation, error) {
	p.data = data
	p.pos = 0
	if p.Intern == nil {
		// Unescaped strings are never longer than their quoted form, so
		// this buffer never grows and the strings made from it stay valid.
		p.buf = make([]byte, 0, len(data))
	}
	p.outs = p.outs[:0]
	p.inDrvs = p.inDrvs[:0]
	p.spans = p.spans[:0]
	p.strs = p.strs[:0]
	p.env = p.env[:0]
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
	if !bytes.HasPrefix(p.data[p.pos:], []byte(tok)) {
		if len(p.data)-p.pos < len(tok) && bytes.HasPrefix([]byte(tok), p.data[p.pos:]) {
			return p.fail(len(p.data), "unexpected end of input, expected %q", tok)
		}
		return p.fail(p.pos, "expected %q", tok)
	}
	p.pos += len(tok)
	return nil
}

// more reports whether a list continues: it consumes "," (true) or "]"
// (false). first is true before the first element, where "]" ends an empty
// list and anything else starts an element.
func (p *Parser) more(first bool) (bool, error) {
	if p.pos >= len(p.data) {
		return false, p.fail(p.pos, "unexpected end of input in a list")
	}
	c := p.data[p.pos]
	switch {
	case c == ']':
		p.pos++
		return false, nil
	case first:
		return true, nil
	case c == ',':
		p.pos++
		return true, nil
	}
	return false, p.fail(p.pos, "expected ',' or ']'")
}

// each parses the elements of a list whose "[" has been consumed, calling
// elem for each, up to and including the closing "]".
func (p *Parser) each(elem func() error) error {
	for first := true; ; first = false {
		ok, err := p.more(first)
		if err != nil || !ok {
			return err
		}
		if err := elem(); err != nil {
			return err
		}
	}
}

// order checks that key s (at offset off) comes strictly after prev, the
// key of the previous entry of a sorted map or set (Nix's std::map order).
func (p *Parser) order(prev, s string, off int, what string) error {
	switch c := strings.Compare(prev, s); {
	case c == 0:
		return p.fail(off, "duplicate %s %q", what, s)
	case c > 0:
		return p.fail(off, "%s %q out of order (Nix writes them sorted)", what, s)
	}
	return nil
}

// makeString turns unescaped bytes into the derivation's string.
func (p *Parser) makeString(b []byte) string {
	if p.Intern != nil {
		return p.Intern(b)
	}
	if len(b) == 0 {
		return ""
	}
	start := len(p.buf)
	p.buf = append(p.buf, b...)
	return unsafe.String(&p.buf[start], len(b))
}

// rawString parses a string Nix writes without escaping (printUnquotedString:
// paths, output names, hash fields, platform). A backslash in it could not
// be read back the way it was written, so it is rejected.
func (p *Parser) rawString() (string, int, error) {
	start := p.pos
	if start >= len(p.data) || p.data[start] != '"' {
		if start >= len(p.data) {
			return "", start, p.fail(start, "unexpected end of input, expected a string")
		}
		return "", start, p.fail(start, "expected a string")
	}
	rest := p.data[start+1:]
	q := bytes.IndexByte(rest, '"')
	if q < 0 {
		return "", start, p.fail(start, "unterminated string")
	}
	if b := bytes.IndexByte(rest[:q], '\\'); b >= 0 {
		return "", start, p.fail(start+1+b, "escape sequence in a field Nix writes unescaped")
	}
	p.pos = start + 2 + q
	return p.makeString(rest[:q]), start, nil
}

// escString parses a string written with printString (builder, args, env):
// only \" \\ \n \r \t, and no raw LF, CR or TAB.
func (p *Parser) escString() (string, int, error) {
	start := p.pos
	if start >= len(p.data) || p.data[start] != '"' {
		if start >= len(p.data) {
			return "", start, p.fail(start, "unexpected end of input, expected a string")
		}
		return "", start, p.fail(start, "expected a string")
	}
	i := start + 1
	data := p.data
	q := bytes.IndexByte(data[i:], '"')
	if q < 0 {
		return "", start, p.fail(start, "unterminated string")
	}
	q += i
	b := bytes.IndexByte(data[i:q], '\\')
	if b < 0 {
		// Fast path: no escapes.
		if err := p.checkRaw(i, q); err != nil {
			return "", start, err
		}
		p.pos = q + 1
		return p.makeString(data[i:q]), start, nil
	}
	var out []byte
	if p.Intern != nil {
		out = p.scratch[:0]
	} else {
		out = p.buf
	}
	mark := len(out)
	for {
		// q is the first '"' at or after i, b the first '\\' in [i, q).
		if b < 0 {
			out = append(out, data[i:q]...)
			i = q
			break
		}
		b += i
		out = append(out, data[i:b]...)
		if b+1 >= len(data) {
			return "", start, p.fail(start, "unterminated string")
		}
		switch c := data[b+1]; c {
		case '"', '\\':
			out = append(out, c)
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		default:
			return "", start, p.fail(b, "invalid escape sequence \\%c (Nix writes only \\\" \\\\ \\n \\r \\t)", c)
		}
		i = b + 2
		if i > q {
			// The escape consumed the quote we had found.
			q = bytes.IndexByte(data[i:], '"')
			if q < 0 {
				return "", start, p.fail(start, "unterminated string")
			}
			q += i
		}
		b = bytes.IndexByte(data[i:q], '\\')
	}
	if err := p.checkRaw(start+1, i); err != nil {
		return "", start, err
	}
	p.pos = i + 1
	s := out[mark:]
	if p.Intern != nil {
		p.scratch = out
		return p.Intern(s), start, nil
	}
	p.buf = out
	if len(s) == 0 {
		return "", start, nil
	}
	return unsafe.String(&s[0], len(s)), start, nil
}

// checkRaw rejects the bytes printString always escapes when they appear
// raw in data[i:j].
func (p *Parser) checkRaw(i, j int) error {
	seg := p.data[i:j]
	for _, c := range [...]byte{'\n', '\r', '\t'} {
		if k := bytes.IndexByte(seg, c); k >= 0 {
			return p.fail(i+k, "raw control character %q in a string Nix writes escaped", c)
		}
	}
	return nil
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
	if err := p.expect(",["); err != nil {
		return nil, err
	}
	if err := p.parseInputDrvs(); err != nil {
		return nil, err
	}
	if err := p.expect(",["); err != nil {
		return nil, err
	}
	srcStart := len(p.strs)
	if err := p.parseSortedList(true); err != nil {
		return nil, err
	}
	srcEnd := len(p.strs)
	if err := p.expect(","); err != nil {
		return nil, err
	}
	platform, _, err := p.rawString()
	if err != nil {
		return nil, err
	}
	if err := p.expect(","); err != nil {
		return nil, err
	}
	builder, _, err := p.escString()
	if err != nil {
		return nil, err
	}
	if err := p.expect(",["); err != nil {
		return nil, err
	}
	err = p.each(func() error {
		s, _, err := p.escString()
		p.strs = append(p.strs, s)
		return err
	})
	if err != nil {
		return nil, err
	}
	argsEnd := len(p.strs)
	if err := p.expect(",["); err != nil {
		return nil, err
	}
	if err := p.parseEnv(); err != nil {
		return nil, err
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	if p.pos != len(p.data) {
		return nil, p.fail(p.pos, "trailing data after the derivation")
	}

	d := &Derivation{Platform: platform, Builder: builder}
	d.Outputs = append([]Output(nil), p.outs...)
	if len(p.inDrvs) > 0 {
		d.InputDrvs = append([]InputDrv(nil), p.inDrvs...)
	}
	var strs []string
	if len(p.strs) > 0 {
		strs = append([]string(nil), p.strs...)
	}
	for k := range d.InputDrvs {
		d.InputDrvs[k].Outputs = strs[p.spans[2*k]:p.spans[2*k+1]:p.spans[2*k+1]]
	}
	if srcEnd > srcStart {
		d.InputSrcs = strs[srcStart:srcEnd:srcEnd]
	}
	if argsEnd > srcEnd {
		d.Args = strs[srcEnd:argsEnd:argsEnd]
	}
	if len(p.env) > 0 {
		d.Env = append([]EnvVar(nil), p.env...)
	}
	return d, nil
}

// parseSortedList parses the rest of a list of unescaped strings after its
// "[" into p.strs, requiring strictly increasing elements (a set, as Nix
// keeps it); paths additionally must be store paths.
func (p *Parser) parseSortedList(paths bool) error {
	base := len(p.strs)
	return p.each(func() error {
		s, off, err := p.rawString()
		if err != nil {
			return err
		}
		if paths {
			if reason := checkStorePath(s); reason != "" {
				return p.fail(off, "invalid store path %q: %s", s, reason)
			}
		}
		if n := len(p.strs); n > base {
			if err := p.order(p.strs[n-1], s, off, "entry"); err != nil {
				return err
			}
		}
		p.strs = append(p.strs, s)
		return nil
	})
}

func (p *Parser) parseOutputs() error {
	var kind OutputKind
	var floatAlgo HashAlgo
	err := p.each(func() error {
		start := p.pos
		if err := p.expect("("); err != nil {
			return err
		}
		var o Output
		var offs [4]int
		var err error
		for k, dst := range [...]*string{&o.Name, &o.Path, &o.HashAlgo, &o.Hash} {
			if k > 0 {
				if err := p.expect(","); err != nil {
					return err
				}
			}
			if *dst, offs[k], err = p.rawString(); err != nil {
				return err
			}
		}
		if err := p.expect(")"); err != nil {
			return err
		}
		if o.Name == "" {
			return p.fail(offs[0], "empty output name")
		}
		if n := len(p.outs); n > 0 {
			if err := p.order(p.outs[n-1].Name, o.Name, offs[0], "output"); err != nil {
				return err
			}
		}
		k, algo, msg, field := classifyOutput(&o)
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
		return nil
	})
	if err != nil {
		return err
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
	if o.HashAlgo == "" {
		if o.Hash != "" {
			return 0, 0, "hash without a hash algorithm", 3
		}
		if o.Path == "" {
			return Deferred, 0, "", 0
		}
		if reason := checkStorePath(o.Path); reason != "" {
			return 0, 0, "invalid store path: " + reason, 1
		}
		return InputAddressed, 0, "", 0
	}
	method, algo, err := parseMethodAlgo(o.HashAlgo)
	if err != nil {
		return 0, 0, err.Error(), 2
	}
	switch o.Hash {
	case "impure":
		if o.Path != "" {
			return 0, 0, "impure output with a path", 1
		}
		return Impure, algo, "", 0
	case "":
		if o.Path != "" {
			return 0, 0, "floating content-addressed output with a path", 1
		}
		return Floating, algo, "", 0
	}
	if method == Text && algo != SHA256 {
		return 0, 0, "text hashing requires sha256", 2
	}
	if _, err := decodeHash(o.Hash, algo); err != nil {
		return 0, 0, err.Error(), 3
	}
	if reason := checkStorePath(o.Path); reason != "" {
		return 0, 0, "invalid store path: " + reason, 1
	}
	return FixedOutput, algo, "", 0
}

func (p *Parser) parseInputDrvs() error {
	return p.each(func() error {
		if err := p.expect("("); err != nil {
			return err
		}
		path, off, err := p.rawString()
		if err != nil {
			return err
		}
		if reason := checkStorePath(path); reason != "" {
			return p.fail(off, "invalid store path %q: %s", path, reason)
		}
		if n := len(p.inDrvs); n > 0 {
			if err := p.order(p.inDrvs[n-1].Path, path, off, "input derivation"); err != nil {
				return err
			}
		}
		if err := p.expect(",["); err != nil {
			return err
		}
		lstart := p.pos
		begin := len(p.strs)
		if err := p.parseSortedList(false); err != nil {
			return err
		}
		if len(p.strs) == begin {
			return p.fail(lstart, "input derivation %q with no outputs", path)
		}
		if err := p.expect(")"); err != nil {
			return err
		}
		p.inDrvs = append(p.inDrvs, InputDrv{Path: path})
		p.spans = append(p.spans, begin, len(p.strs))
		return nil
	})
}

func (p *Parser) parseEnv() error {
	return p.each(func() error {
		if err := p.expect("("); err != nil {
			return err
		}
		k, off, err := p.escString()
		if err != nil {
			return err
		}
		if n := len(p.env); n > 0 {
			if err := p.order(p.env[n-1].Key, k, off, "environment variable"); err != nil {
				return err
			}
		}
		if err := p.expect(","); err != nil {
			return err
		}
		v, _, err := p.escString()
		if err != nil {
			return err
		}
		if err := p.expect(")"); err != nil {
			return err
		}
		p.env = append(p.env, EnvVar{Key: k, Value: v})
		return nil
	})
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

// checkStorePath validates a full store path the way store.ParsePath does,
// without allocating; it returns why s is rejected, or "".
func checkStorePath(s string) string {
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
