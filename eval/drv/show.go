package drv

import (
	"fmt"
	"sort"

	"github.com/nbuild/nbuild/store"
)

// ShowJSON renders derivations, keyed by their full .drv paths, as
// `nix show-derivation` of Nix 2.8 prints them (src/nix/show-derivation.cc
// with src/libutil/json.cc): an object sorted by path, 2-space indent,
// a trailing newline, per derivation the keys outputs, inputSrcs,
// inputDrvs, system, builder, args, env. A fixed output's path is the one
// computed from its hash and hash is printed in base16, as Nix does.
func ShowJSON(drvs map[string]*Derivation) ([]byte, error) {
	paths := make([]string, 0, len(drvs))
	for p := range drvs {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	w := jsonWriter{}
	w.open('{')
	for _, p := range paths {
		if err := w.derivation(p, drvs[p]); err != nil {
			return nil, err
		}
	}
	w.close('}')
	w.b = append(w.b, '\n')
	return w.b, nil
}

// jsonWriter writes pretty JSON the way 2.8's JSONWriter does: each member
// on its own line, empty objects and lists as {} and [].
type jsonWriter struct {
	b     []byte
	depth int
	empty bool // the innermost open container has no member yet
}

func (w *jsonWriter) open(c byte) {
	w.b = append(w.b, c)
	w.depth++
	w.empty = true
}

func (w *jsonWriter) close(c byte) {
	w.depth--
	if !w.empty {
		w.newline()
	}
	w.b = append(w.b, c)
	w.empty = false
}

func (w *jsonWriter) newline() {
	w.b = append(w.b, '\n')
	for i := 0; i < w.depth; i++ {
		w.b = append(w.b, ' ', ' ')
	}
}

// elem starts an object member or a list element on a line of its own.
func (w *jsonWriter) elem() {
	if !w.empty {
		w.b = append(w.b, ',')
	}
	w.empty = false
	w.newline()
}

func (w *jsonWriter) key(k string) {
	w.elem()
	w.b = appendJSONString(w.b, k)
	w.b = append(w.b, ':', ' ')
}

func (w *jsonWriter) str(k, v string) {
	w.key(k)
	w.b = appendJSONString(w.b, v)
}

func (w *jsonWriter) list(k string, l []string) {
	w.key(k)
	w.listBody(l)
}

func (w *jsonWriter) listBody(l []string) {
	w.open('[')
	for _, s := range l {
		w.elem()
		w.b = appendJSONString(w.b, s)
	}
	w.close(']')
}

func (w *jsonWriter) derivation(path string, d *Derivation) error {
	p, err := store.ParsePath(path)
	if err != nil {
		return fmt.Errorf("drv: %w", err)
	}
	kind, err := d.Kind()
	if err != nil {
		return fmt.Errorf("drv: %s: %w", path, err)
	}
	w.key(path)
	w.open('{')
	w.key("outputs")
	w.open('{')
	for i := range d.Outputs {
		o := &d.Outputs[i]
		w.key(o.Name)
		w.open('{')
		switch kind {
		case InputAddressed:
			w.key("path")
			w.b = appendJSONPath(w.b, o.Path)
		case FixedOutput:
			fh, err := o.FixedHash()
			if err != nil {
				return fmt.Errorf("drv: %s: %w", path, err)
			}
			fp, err := FixedOutputPath(OutputPathName(NameFromDrvPath(p), o.Name), fh)
			if err != nil {
				return fmt.Errorf("drv: %s: %w", path, err)
			}
			w.str("path", fp.String())
			w.str("hashAlgo", fh.MethodAlgo())
			w.str("hash", fh.Hex())
		case Floating:
			w.str("hashAlgo", o.HashAlgo)
		case Impure:
			w.str("hashAlgo", o.HashAlgo)
			w.key("impure")
			w.b = append(w.b, "true"...)
		}
		w.close('}')
	}
	w.close('}')
	w.list("inputSrcs", d.InputSrcs)
	w.key("inputDrvs")
	w.open('{')
	for _, in := range d.InputDrvs {
		w.elem()
		w.b = appendJSONPath(w.b, in.Path)
		w.b = append(w.b, ':', ' ')
		w.listBody(in.Outputs)
	}
	w.close('}')
	w.str("system", d.Platform)
	w.str("builder", d.Builder)
	w.list("args", d.Args)
	w.key("env")
	w.open('{')
	for _, e := range d.Env {
		w.str(e.Key, e.Value)
	}
	w.close('}')
	w.close('}')
	return nil
}

// appendJSONPath is appendJSONString(dst, p.String()) without the string:
// a store path has nothing to escape.
func appendJSONPath(dst []byte, p store.Path) []byte {
	dst = append(dst, '"')
	dst = p.AppendTo(dst)
	return append(dst, '"')
}

// appendJSONString quotes s as 2.8 src/libutil/json.cc toJSON does: " and
// \ backslashed, LF CR TAB as \n \r \t, other bytes below 0x20 as \u00XX,
// and every other byte (DEL, non-ASCII, invalid UTF-8) raw.
func appendJSONString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	last := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[last:i]...)
		last = i + 1
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
	}
	dst = append(dst, s[last:]...)
	return append(dst, '"')
}
