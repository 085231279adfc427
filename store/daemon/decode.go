package daemon

import "github.com/nbuild/nbuild/nar/wire"

// decoder reads a message field by field with a sticky error, so a decoder
// function reads like the wire layout it mirrors.
type decoder struct {
	r   *wire.Reader
	err error
}

func (d *decoder) u64() uint64 {
	if d.err != nil {
		return 0
	}
	v, err := d.r.ReadUint64()
	d.err = err
	return v
}

func (d *decoder) bool() bool { return d.u64() != 0 }

func (d *decoder) str() string {
	if d.err != nil {
		return ""
	}
	s, err := d.r.ReadString()
	d.err = err
	return s
}

func (d *decoder) strs() []string {
	if d.err != nil {
		return nil
	}
	ss, err := d.r.ReadStrings()
	d.err = err
	return ss
}

// count reads a u64 element count bounded by limit.
func (d *decoder) count(what string, limit uint64) uint64 {
	n := d.u64()
	if d.err == nil && n > limit {
		d.err = &wire.LengthError{What: what, Len: n, Limit: limit}
		return 0
	}
	return n
}
