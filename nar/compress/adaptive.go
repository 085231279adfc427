package compress

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
)

// adaptive holds what Options.Adaptive decides from: the ratio of the
// chunks compressed lately, how long a worker takes per input byte, and
// how long the underlying writer takes per output byte. Times are kept
// per byte (not as rates) so that an early burst into a buffer (an ssh
// window, a socket) cannot hide a slow link for long: an average of
// times is dominated by the slow samples.
type adaptive struct {
	// starved is set while the flusher waits for a chunk's compression:
	// the writer could take more.
	starved atomic.Bool

	mu        sync.Mutex
	decided   int     // chunks decided so far
	ratio     float64 // EWMA of output/input of compressed chunks; 0 before the first
	compress  float64 // EWMA seconds per input byte, one worker; 0 before the first
	write     float64 // EWMA seconds per output byte the writer took; 0 before enough
	writtenN  int64   // output bytes written so far
	writeTime time.Duration
}

const (
	// storeRatio: chunks that shrink less than this are not worth a
	// compressor's time (nor the remote decompressor's).
	storeRatio = 0.95
	// probeEvery: while storing for the ratio, every probeEvery-th chunk
	// is compressed anyway to notice compressible data again.
	probeEvery = 8
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

// store decides whether the next chunk is stored rather than compressed,
// for a pipeline of the given number of workers.
func (a *adaptive) store(workers int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.decided++
	if a.ratio >= storeRatio {
		return a.decided%probeEvery != 0
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

// compressed records that a worker compressed n input bytes in d.
func (a *adaptive) compressed(n int, d time.Duration) {
	if n == 0 {
		return
	}
	a.mu.Lock()
	a.compress = ewma(a.compress, d.Seconds()/float64(n))
	a.mu.Unlock()
}

// written records that the writer took a chunk of in input bytes, out
// output bytes, in d.
func (a *adaptive) written(in, out int, stored bool, d time.Duration) {
	if in == 0 || out == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !stored {
		a.ratio = ewma(a.ratio, float64(out)/float64(in))
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
