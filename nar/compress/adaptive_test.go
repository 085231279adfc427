package compress

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"math/rand/v2"
	"os/exec"
	"testing"
	"testing/synctest"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nbuild/nbuild/store/storetest"
)

// TestStoredFrameDecodes checks stored frames against klauspost's decoder
// and, when present, the zstd tool (what a remote decompresses with), at
// the sizes around a raw block's limit.
func TestStoredFrameDecodes(t *testing.T) {
	storetest.RequireTools(t, "zstd")
	for _, n := range []int{0, 1, maxRawBlock - 1, maxRawBlock, maxRawBlock + 1, 3*maxRawBlock + 17} {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(i*7 + i>>9)
		}
		// Two frames back to back, as a stream of chunks is.
		frame := appendStoredFrame(appendStoredFrame(nil, src), src)
		if want := 2 * (9 + n + 3*max(1, (n+maxRawBlock-1)/maxRawBlock)); len(frame) != want {
			t.Errorf("n=%d: %d bytes of frames, want %d", n, len(frame), want)
		}
		want := append(append([]byte(nil), src...), src...)
		dec, err := zstd.NewReader(bytes.NewReader(frame))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(dec)
		dec.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("n=%d: klauspost read %d bytes, err %v; want %d bytes", n, len(got), err, len(want))
		}
		cmd := exec.Command("zstd", "-dcq")
		cmd.Stdin = bytes.NewReader(frame)
		got, err = cmd.Output()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("n=%d: zstd -d wrote %d bytes, err %v; want %d bytes", n, len(got), err, len(want))
		}
	}
}

// TestAdaptivePolicy checks the decision from given measurements.
func TestAdaptivePolicy(t *testing.T) {
	const (
		slowLink   = 1 / 12.5e6 // 100 Mbit/s, seconds per byte
		fastLink   = 1 / 2e9
		oneWorker  = 1 / 300e6 // a zstd -3 worker
		slowWorker = 1 / 50e6
	)
	cases := []struct {
		name                   string
		incompressible         bool
		ratio, compress, write float64
		workers                int
		starved                bool
		want                   bool
	}{
		{"nothing measured yet", false, 0, 0, 0, 2, true, false},
		{"nothing measured yet, incompressible", true, 0, 0, 0, 2, true, true},
		{"link not yet trusted", false, 0.3, oneWorker, 0, 2, true, false},
		{"slow link", false, 0.3, oneWorker, slowLink, 2, true, false},
		{"slow link, slow workers", false, 0.3, slowWorker, slowLink, 2, true, false},
		{"fast link, workers behind, writer waits", false, 0.3, oneWorker, fastLink, 2, true, true},
		{"fast link, workers behind, writer busy", false, 0.3, oneWorker, fastLink, 2, false, false},
		{"fast link, workers ahead", false, 0.3, 1 / 5e9, fastLink, 2, true, false},
		{"incompressible, slow link", true, 0.3, oneWorker, slowLink, 2, false, true},
		{"one worker, slow link", false, 0.3, oneWorker, slowLink, 1, false, false},
		{"one worker, fast link", false, 0.3, oneWorker, fastLink, 1, false, true},
		{"one worker, compressing saves more than it costs", false, 0.5, 1 / 100e6, 1 / 40e6, 1, false, false},
		{"one worker, compressing costs more than it saves", false, 0.5, 1 / 100e6, 1 / 60e6, 1, false, true},
	}
	for _, c := range cases {
		a := &adaptive{ratio: c.ratio, compress: c.compress, write: c.write}
		a.starved.Store(c.starved)
		if got := a.decide(c.incompressible, c.workers); got != c.want {
			t.Errorf("%s: store = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestAdaptiveSample checks the per-chunk sample on data whose answer is
// clear.
func TestAdaptiveSample(t *testing.T) {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &adaptive{enc: enc}
	random := make([]byte, 4<<20)
	rng := rand.NewChaCha8([32]byte{3})
	rng.Read(random)
	text := bytes.Repeat([]byte("/nix/store/ a line of a build log\n"), 1<<17)
	half := append(append([]byte(nil), text[:2<<20]...), random[:2<<20]...)
	for _, c := range []struct {
		name string
		in   []byte
		want bool
	}{
		{"random", random, true},
		{"small random", random[:1000], true},
		{"text", text, false},
		{"small text", text[:1000], false},
		{"empty", nil, false},
		// Two of three windows are random: the chunk barely shrinks
		// (to ~0.5) but the sample says compress it.
		{"half text", half, false},
	} {
		if got := a.incompressible(c.in); got != c.want {
			t.Errorf("%s: incompressible = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestAdaptiveWriteTimes checks that the writer's speed is trusted only
// after linkEvidence bytes and then follows the slow samples.
func TestAdaptiveWriteTimes(t *testing.T) {
	a := &adaptive{}
	// A burst into buffers: fast, but not yet evidence.
	a.written(1<<20, false, time.Millisecond)
	if a.write != 0 {
		t.Fatalf("write speed trusted after %d bytes", a.writtenN)
	}
	for a.writtenN < linkEvidence {
		a.written(1<<20, false, 80*time.Millisecond) // 12.5 MB/s
	}
	if rate := 1 / a.write; rate > 14e6 {
		t.Errorf("link measured at %.1f MB/s after the burst, want about 12.5", rate/1e6)
	}
	a.written(4<<20, true, 0)
	if a.stored != 1 {
		t.Errorf("%d stored chunks counted, want 1", a.stored)
	}
}

// frames walks a stream of zstd frames and counts the stored ones (as
// appendStoredFrame writes them) and the others.
func frames(t *testing.T, b []byte) (stored, compressed int) {
	t.Helper()
	for len(b) > 0 {
		if len(b) < 6 || binary.LittleEndian.Uint32(b) != zstdMagic {
			t.Fatalf("no frame at %d bytes from the end", len(b))
		}
		fhd := b[4]
		isStored := fhd == storedFHD
		// Header: descriptor, window descriptor unless single segment,
		// dictionary id, content size (RFC 8878 §3.1.1.1).
		pos := 5
		if fhd&0x20 == 0 {
			pos++
		}
		pos += [4]int{0, 1, 2, 4}[fhd&3]
		fcs := [4]int{0, 2, 4, 8}[fhd>>6]
		if fhd>>6 == 0 && fhd&0x20 != 0 {
			fcs = 1
		}
		pos += fcs
		for {
			h := uint32(b[pos]) | uint32(b[pos+1])<<8 | uint32(b[pos+2])<<16
			size := int(h >> 3)
			typ := (h >> 1) & 3
			if typ != 0 {
				isStored = false
			}
			if typ == 1 { // RLE: one byte
				size = 1
			}
			pos += 3 + size
			if h&1 != 0 {
				break
			}
		}
		if fhd&4 != 0 {
			pos += 4 // checksum
		}
		if isStored {
			stored++
		} else {
			compressed++
		}
		b = b[pos:]
	}
	return stored, compressed
}

// slowWriter takes bytes at a given rate.
type slowWriter struct {
	w    io.Writer
	rate float64 // bytes per second
}

func (s slowWriter) Write(p []byte) (int, error) {
	time.Sleep(time.Duration(float64(len(p)) / s.rate * float64(time.Second)))
	return s.w.Write(p)
}

// TestAdaptiveStream checks what an adaptive writer decides on streams
// whose answer does not depend on the machine's speed, and that the mixed
// stream reads back with klauspost's decoder and the zstd tool.
func TestAdaptiveStream(t *testing.T) {
	storetest.RequireTools(t, "zstd")
	defer SetLinkEvidence(512 << 10)()
	random := make([]byte, 24<<20)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(random)
	// Words drawn from a random vocabulary: compresses to about half.
	var vocab [][]byte
	for i := range 256 {
		vocab = append(vocab, random[i*6:i*6+6])
	}
	var words []byte
	for i := 0; len(words) < 4<<20; i++ {
		words = append(words, vocab[random[i]]...)
	}
	words = words[:4<<20]
	for _, c := range []struct {
		name    string
		data    []byte
		w       func(io.Writer) io.Writer
		workers int
		check   func(t *testing.T, stored, compressed int)
	}{
		{"incompressible", random, func(w io.Writer) io.Writer { return w }, 2, func(t *testing.T, stored, compressed int) {
			if compressed != 0 {
				t.Errorf("%d chunks stored, %d compressed; want all stored", stored, compressed)
			}
		}},
		{"incompressible, one worker", random[:8<<20], func(w io.Writer) io.Writer { return w }, 1, func(t *testing.T, stored, compressed int) {
			if compressed != 0 {
				t.Errorf("%d chunks stored, %d compressed; want all stored", stored, compressed)
			}
		}},
		{"slow link", words, func(w io.Writer) io.Writer { return slowWriter{w, 1.5e6} }, 2, func(t *testing.T, stored, compressed int) {
			// Compressing takes no (bubble) time, far less than the
			// link, so nothing is stored.
			if stored != 0 {
				t.Errorf("%d chunks stored, %d compressed; a slow link wants every chunk compressed", stored, compressed)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			chunk := 512 << 10
			if c.name == "slow link" {
				chunk = 128 << 10
			}
			// In a synctest bubble the slow writer's sleeps take exactly
			// their time and compressing takes none, whatever the
			// machine's load: the decisions cannot depend on it.
			var out bytes.Buffer
			var zw *Writer
			synctest.Test(t, func(t *testing.T) {
				var err error
				zw, err = NewWriter(c.w(&out), "zstd", Options{Adaptive: true, ChunkSize: chunk, Concurrency: c.workers})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := zw.Write(c.data); err != nil {
					t.Fatal(err)
				}
				if err := zw.Close(); err != nil {
					t.Fatal(err)
				}
			})
			if sw, ok := c.w(nil).(slowWriter); ok {
				// The writer measured the link: exactly its rate.
				if got, want := zw.adapt.write, 1/sw.rate; math.Abs(got-want) > want/1000 {
					t.Errorf("measured %.4g s per written byte, the link takes %.4g", got, want)
				}
			}
			stored, compressed := frames(t, out.Bytes())
			if stored+compressed != (len(c.data)+chunk-1)/chunk {
				t.Errorf("%d frames for %d chunks", stored+compressed, (len(c.data)+chunk-1)/chunk)
			}
			c.check(t, stored, compressed)
			if s, n := zw.Stored(); s != stored || n != stored+compressed {
				t.Errorf("Stored() = %d of %d, the stream has %d of %d", s, n, stored, stored+compressed)
			}
			t.Logf("%d stored, %d compressed, %d → %d bytes", stored, compressed, len(c.data), out.Len())
			dec, err := zstd.NewReader(bytes.NewReader(out.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(dec)
			dec.Close()
			if err != nil || !bytes.Equal(got, c.data) {
				t.Fatalf("klauspost read %d bytes (err %v), want the %d written", len(got), err, len(c.data))
			}
			cmd := exec.Command("zstd", "-dcq")
			cmd.Stdin = bytes.NewReader(out.Bytes())
			if got, err = cmd.Output(); err != nil || !bytes.Equal(got, c.data) {
				t.Fatalf("zstd -d wrote %d bytes (err %v), want the %d written", len(got), err, len(c.data))
			}
		})
	}
	if _, err := NewWriter(io.Discard, "xz", Options{Adaptive: true}); err == nil {
		t.Error("Adaptive accepted for xz")
	}
}
