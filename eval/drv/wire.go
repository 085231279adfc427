package drv

import (
	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
)

// AppendBasicWire appends d as a BasicDerivation in the wire encoding of
// the worker and serve protocols' BuildDerivation (2.8
// src/libstore/derivations.cc writeDerivation(Sink&)): outputs (name,
// path, hashAlgo, hash), inputSrcs, platform, builder, args, env. Input
// derivations are not sent: callers put the input closure in InputSrcs.
func (d *Derivation) AppendBasicWire(b []byte) []byte {
	b = wire.AppendUint64(b, uint64(len(d.Outputs)))
	for _, o := range d.Outputs {
		b = wire.AppendString(b, o.Name)
		b = appendWirePath(b, o.Path)
		b = wire.AppendString(b, o.HashAlgo)
		b = wire.AppendString(b, o.Hash)
	}
	b = wire.AppendStrings(b, d.InputSrcs)
	b = wire.AppendString(b, d.Platform)
	b = wire.AppendString(b, d.Builder)
	b = wire.AppendStrings(b, d.Args)
	b = wire.AppendUint64(b, uint64(len(d.Env)))
	for _, e := range d.Env {
		b = wire.AppendString(b, e.Key)
		b = wire.AppendString(b, e.Value)
	}
	return b
}

// appendWirePath is wire.AppendString(b, p.String()) without the string:
// the length, the text, zero padding to 8 bytes.
func appendWirePath(b []byte, p store.Path) []byte {
	n := pathLen(p)
	b = wire.AppendUint64(b, uint64(n))
	b = p.AppendTo(b)
	var zeros [8]byte
	return append(b, zeros[:wire.PadLen(uint64(n))]...)
}
