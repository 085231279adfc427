package compress

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
)

// adaptive holds what Options.Adaptive decides from: whether a sample of
// the chunk compresses, the ratio of the last chunk compressed, how long a
// worker takes per input byte, and how long the underlying writer takes
// per output byte. Times are kept per byte (not as rates) so that an early
// burst into a buffer (an ssh window, a socket) cannot hide a slow link
// for long: an average of times is dominated by the slow samples.
type adaptive struct {
	enc *zstd.Encoder // EncodeAll is safe for concurrent use
	// starved is set while the flusher waits for a chunk's compression:
	// the writer could take more.
	starved atomic.Bool
	// sample and sampled are the producer's scratch buffers (store is
	// called by one goroutine at a time).
	sample, sampled []byte

	mu        sync.Mutex
	decided   int     // chunks decided so far
	stored    int     // chunks stored so far
	ratio     float64 // output/input of the last chunk compressed; 0 before the first
	compress  float64 // EWMA seconds per input byte, one worker; 0 before the first
	write     float64 // EWMA seconds per output byte the writer took; 0 before enough
	writtenN  int64   // output bytes written so far
	writeTime time.Duration
}

const (
	// storeRatio: chunks whose sample shrinks less than this are not
	// worth a compressor's time (nor the remote decompressor's).
	storeRatio = 0.95
	// sampleWindows × sampleWindow bytes, spread over a chunk, are what
	// is compressed to judge it: a closure mixes compressible paths with
	// incompressible ones (archives, images), so the chunk itself is
	// judged rather than the chunks before it, which a pipeline of
	// workers would know of only chunks later. 24 KiB of a 4 MiB chunk
	// costs under 1 % of compressing it.
	sampleWindows = 3
	sampleWindow  = 8 << 10
	// ewmaWeight is the weight of a new sample.
	ewmaWeight = 0.25
)

// linkEvidence is how many output bytes must have been written before the
// writer's speed is trusted: the first megabytes vanish into ssh's channel
// window and socket buffers however slow the link is. A variable for tests.
var linkEvidence int64 = 16 << 20

func ewma(old, sample float64) float64 {
	if old == 0 {
		return sample
	}
	return old + ewmaWeight*(sample-old)
}

// incompressible reports whether windows spread over in shrink by less
// than storeRatio when compressed.
func (a *adaptive) incompressible(in []byte) bool {
	s := in
	if len(in) > sampleWindows*sampleWindow {
		s = a.sample[:0]
		step := len(in) / sampleWindows
		for i := range sampleWindows {
			off := i*step + (step-sampleWindow)/2
			s = append(s, in[off:off+sampleWindow]...)
		}
		a.sample = s
	}
	if len(s) == 0 {
		return false
	}
	a.sampled = a.enc.EncodeAll(s, a.sampled[:0])
	return float64(len(a.sampled)) >= storeRatio*float64(len(s))
}

// store decides whether the chunk in is stored rather than compressed, for
// a pipeline of the given number of workers.
func (a *adaptive) store(in []byte, workers int) bool {
	incompressible := a.incompressible(in)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.decided++
	return a.decide(incompressible, workers)
}

// decide is store's policy, given the sample's verdict; a.mu held.
func (a *adaptive) decide(incompressible bool, workers int) bool {
	if incompressible {
		return true
	}
	if a.compress == 0 || a.write == 0 || a.ratio == 0 {
		return false
	}
	if workers <= 1 {
		// Compress then write, one after the other: storing costs
		// write per input byte, compressing compress + ratio×write.
		return a.write < a.compress+a.ratio*a.write
	}
	// Workers overlap the writer. Compressing every chunk runs at the
	// slower of the workers (compress/workers per input byte) and the
	// writer (ratio×write); when the workers are the slower and the
	// writer waits for them, a stored chunk keeps it busy.
	return a.starved.Load() && a.compress/float64(workers) > a.ratio*a.write
}

// compressed records that a worker compressed n input bytes into out in d.
func (a *adaptive) compressed(n, out int, d time.Duration) {
	if n == 0 {
		return
	}
	a.mu.Lock()
	a.compress = ewma(a.compress, d.Seconds()/float64(n))
	a.ratio = float64(out) / float64(n)
	a.mu.Unlock()
}

// written records that the writer took a chunk of out output bytes in d.
func (a *adaptive) written(out int, stored bool, d time.Duration) {
	if out == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if stored {
		a.stored++
	}
	a.writtenN += int64(out)
	a.writeTime += d
	if a.writtenN < linkEvidence {
		return
	}
	if a.write == 0 {
		// The first estimate is the average of everything so far.
		a.write = a.writeTime.Seconds() / float64(a.writtenN)
		return
	}
	a.write = ewma(a.write, d.Seconds()/float64(out))
}

// Stored frames (RFC 8878 §3.1.1): magic, a frame header descriptor with
// Single_Segment_flag and a 4-byte Frame_Content_Size (0xA0: FCS flag 2,
// single segment, no checksum, no dictionary), the content size, then raw
// blocks of at most 128 KiB, each behind a 3-byte little-endian header
// (bit 0 last block, bits 1-2 type 0 = raw, bits 3-23 size).
const (
	zstdMagic   = 0xFD2FB528
	storedFHD   = 0xA0
	maxRawBlock = 128 << 10
)

// appendStoredFrame appends src as one zstd frame of raw blocks. src must
// be shorter than 4 GiB (chunks are).
func appendStoredFrame(dst, src []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, zstdMagic)
	dst = append(dst, storedFHD)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(src)))
	for {
		n := min(len(src), maxRawBlock)
		hdr := uint32(n) << 3 // type 0: raw
		if n == len(src) {
			hdr |= 1 // last block
		}
		dst = append(dst, byte(hdr), byte(hdr>>8), byte(hdr>>16))
		dst = append(dst, src[:n]...)
		src = src[n:]
		if len(src) == 0 {
			return dst
		}
	}
}
