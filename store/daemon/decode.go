package daemon

import "github.com/nbuild/nbuild/nar/wire"

// decoder is wire's sticky-error Decoder, with the daemon's own helpers
// (noPos, readFields) as methods.
type decoder struct{ wire.Decoder }
