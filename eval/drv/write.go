package drv

import (
	"math/bits"
	"slices"

	"github.com/nbuild/nbuild/store"
)

// escapes maps the bytes printString escapes to the letter after the
// backslash (2.8 src/libstore/derivations.cc printString).
var escapes = [256]byte{'"': '"', '\\': '\\', '\n': 'n', '\r': 'r', '\t': 't'}

// AppendATerm appends the .drv file text of d to dst, exactly as
// 2.8 Derivation::unparse writes it: fields in the order of the struct,
// builder, args and env escaped, everything else raw. Slices are written in
// their order; Parse only accepts the sorted order Nix writes.
func (d *Derivation) AppendATerm(dst []byte) []byte {
	return d.appendATerm(dst, nil, false)
}

// hashedInput is an inputDrvs entry as hashDerivationModulo writes it: the
// input's hash (lowercase hex) instead of its path.
type hashedInput struct {
	hex  string
	outs []string
}

// appendATerm writes d; with inputs != nil those replace InputDrvs, and with
// mask the output paths and the env vars named after outputs are blanked
// (2.8 Derivation::unparse with maskOutputs and actualInputs).
func (d *Derivation) appendATerm(dst []byte, inputs []hashedInput, mask bool) []byte {
	dst = slices.Grow(dst, d.sizeHint())
	dst = append(dst, "Derive(["...)
	for i := range d.Outputs {
		o := &d.Outputs[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '(')
		dst = appendRaw(dst, o.Name)
		dst = append(dst, ',')
		if mask {
			dst = append(dst, `""`...)
		} else {
			dst = appendPath(dst, o.Path)
		}
		dst = append(dst, ',')
		dst = appendRaw(dst, o.HashAlgo)
		dst = append(dst, ',')
		dst = appendRaw(dst, o.Hash)
		dst = append(dst, ')')
	}
	dst = append(dst, "],["...)
	if inputs != nil {
		for i, in := range inputs {
			dst = appendInputStart(dst, i)
			dst = appendRaw(dst, in.hex)
			dst = appendInputOutputs(dst, in.outs)
		}
	} else {
		for i, in := range d.InputDrvs {
			dst = appendInputStart(dst, i)
			dst = appendPath(dst, in.Path)
			dst = appendInputOutputs(dst, in.Outputs)
		}
	}
	dst = append(dst, "],["...)
	dst = appendRawList(dst, d.InputSrcs)
	dst = append(dst, "],"...)
	dst = appendRaw(dst, d.Platform)
	dst = append(dst, ',')
	dst = appendEscaped(dst, d.Builder)
	dst = append(dst, ",["...)
	for i, a := range d.Args {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendEscaped(dst, a)
	}
	dst = append(dst, "],["...)
	for i, e := range d.Env {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '(')
		dst = appendEscaped(dst, e.Key)
		dst = append(dst, ',')
		if mask && d.hasOutput(e.Key) {
			dst = append(dst, `""`...)
		} else {
			dst = appendEscaped(dst, e.Value)
		}
		dst = append(dst, ')')
	}
	dst = append(dst, "])"...)
	return dst
}

// appendInputStart and appendInputOutputs write the i'th inputDrvs entry
// around its path (or hash).
func appendInputStart(dst []byte, i int) []byte {
	if i > 0 {
		dst = append(dst, ',')
	}
	return append(dst, '(')
}

func appendInputOutputs(dst []byte, outs []string) []byte {
	dst = append(dst, ",["...)
	dst = appendRawList(dst, outs)
	return append(dst, "])"...)
}

func (d *Derivation) hasOutput(name string) bool {
	for i := range d.Outputs {
		if d.Outputs[i].Name == name {
			return true
		}
	}
	return false
}

// sizeHint is the length of the unescaped text, a close lower bound.
func (d *Derivation) sizeHint() int {
	n := 20 + len(d.Platform) + len(d.Builder)
	for i := range d.Outputs {
		o := &d.Outputs[i]
		n += 12 + len(o.Name) + pathLen(o.Path) + len(o.HashAlgo) + len(o.Hash)
	}
	for _, in := range d.InputDrvs {
		n += 8 + pathLen(in.Path)
		for _, o := range in.Outputs {
			n += 3 + len(o)
		}
	}
	for _, s := range d.InputSrcs {
		n += 3 + len(s)
	}
	for _, s := range d.Args {
		n += 3 + len(s)
	}
	for _, e := range d.Env {
		n += 8 + len(e.Key) + len(e.Value)
	}
	return n
}

// pathLen is the length of p's text: 0 for the zero Path.
func pathLen(p store.Path) int {
	if p.IsZero() {
		return 0
	}
	return len(store.StoreDir) + 1 + store.HashPartLen + 1 + len(p.Name())
}

// appendPath writes p quoted ("" for the zero Path), as appendRaw writes
// its text.
func appendPath(dst []byte, p store.Path) []byte {
	dst = append(dst, '"')
	dst = p.AppendTo(dst)
	return append(dst, '"')
}

// appendRaw writes s quoted without escaping (printUnquotedString).
func appendRaw(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

func appendRawList(dst []byte, l []string) []byte {
	for i, s := range l {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendRaw(dst, s)
	}
	return dst
}

// appendEscaped writes s quoted with printString's escapes.
func appendEscaped(dst []byte, s string) []byte {
	dst = append(dst, '"')
	last := 0
	for i := 0; i < len(s); {
		// Skip eight bytes at a time while none needs escaping (escMask
		// also flags other bytes below 0x0E, which are written raw).
		if i+8 <= len(s) {
			m := escMask(uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
				uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56)
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) >> 3
		}
		if e := escapes[s[i]]; e != 0 {
			dst = append(dst, s[last:i]...)
			dst = append(dst, '\\', e)
			last = i + 1
		}
		i++
	}
	dst = append(dst, s[last:]...)
	return append(dst, '"')
}
