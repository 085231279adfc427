package compress_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nbuild/nbuild/nar/compress"
	"github.com/nbuild/nbuild/store/storetest"
)

// sample returns n bytes that compress somewhat, like real NARs.
func sample(n int) []byte {
	r := rand.New(rand.NewPCG(1, uint64(n)))
	words := []string{"nix", "store", "/nix/store/", "lib", "bin", "share", "\x00\x00\x00\x00", "ELF", "x86_64"}
	var b bytes.Buffer
	for b.Len() < n {
		if r.IntN(10) == 0 {
			b.WriteByte(byte(r.Uint32()))
		} else {
			b.WriteString(words[r.IntN(len(words))])
		}
	}
	return b.Bytes()[:n]
}

func compressBytes(t testing.TB, algo string, data []byte, opts compress.Options) []byte {
	t.Helper()
	var out bytes.Buffer
	zw, err := compress.NewWriter(&out, algo, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Uneven writes cross chunk boundaries.
	for rest := data; len(rest) > 0; {
		k := min(len(rest), 1+len(rest)/3, 100_003)
		if _, err := zw.Write(rest[:k]); err != nil {
			t.Fatal(err)
		}
		rest = rest[k:]
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func decompress(t testing.TB, algo string, data []byte) []byte {
	t.Helper()
	zr, err := compress.NewReader(bytes.NewReader(data), algo)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: decompress: %v", algo, err)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	const chunk = 64 << 10
	for _, algo := range []string{"none", "zstd", "xz"} {
		for _, size := range []int{0, 1, chunk - 1, chunk, chunk + 1, 5*chunk + 17} {
			data := sample(size)
			var first []byte
			for _, conc := range []int{1, 2, 4} {
				name := fmt.Sprintf("%s/%d/c%d", algo, size, conc)
				got := compressBytes(t, algo, data, compress.Options{Concurrency: conc, ChunkSize: chunk, Level: 1})
				if back := decompress(t, algo, got); !bytes.Equal(back, data) {
					t.Fatalf("%s: round trip differs", name)
				}
				if first == nil {
					first = got
				} else if !bytes.Equal(got, first) {
					t.Errorf("%s: output differs from concurrency 1", name)
				}
			}
		}
	}
}

// TestExternalTools: what we write, the zstd and xz programs read, at
// concurrency 1 and N, default chunk sizes.
func TestExternalTools(t *testing.T) {
	data := sample(9<<20 + 5)
	storetest.RequireTools(t, "zstd", "xz")
	for _, algo := range []string{"zstd", "xz"} {
		for _, conc := range []int{1, 3} {
			opts := compress.Options{Concurrency: conc}
			if algo == "xz" {
				opts.Level = 1 // keep the test quick; chunking is what matters
				opts.ChunkSize = 2 << 20
			}
			z := compressBytes(t, algo, data, opts)
			cmd := exec.Command(algo, "-d", "-c")
			cmd.Stdin = bytes.NewReader(z)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s -d (concurrency %d): %v", algo, conc, err)
			}
			if !bytes.Equal(out, data) {
				t.Errorf("%s -d (concurrency %d): %d bytes, differ", algo, conc, len(out))
			}
		}
		// And we read what the tool writes (one stream, several frames).
		cmd := exec.Command(algo, "-1", "-c", "-T2") // -1: quick; the framing is what matters
		cmd.Stdin = bytes.NewReader(data)
		z, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if back := decompress(t, algo, append(z, z...)); !bytes.Equal(back, append(data, data...)) {
			t.Errorf("%s: reading concatenated %s output failed", algo, algo)
		}
	}
}

func TestUnknownAlgorithm(t *testing.T) {
	if _, err := compress.NewWriter(io.Discard, "lz5", compress.Options{}); !errors.Is(err, compress.ErrUnknownAlgorithm) {
		t.Error(err)
	}
	if _, err := compress.NewReader(nil, "bzip3"); !errors.Is(err, compress.ErrUnknownAlgorithm) {
		t.Error(err)
	}
}

func TestReset(t *testing.T) {
	var out bytes.Buffer
	zw, err := compress.NewWriter(&out, "zstd", compress.Options{ChunkSize: 1 << 10, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		out.Reset()
		zw.Reset(&out)
		data := sample(i * 300)
		zw.Write(data)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		if back := decompress(t, "zstd", out.Bytes()); !bytes.Equal(back, data) {
			t.Fatalf("stream %d differs", i)
		}
	}
}

// waitGoroutines waits for the goroutine count to fall to at most n.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left, want ≤ %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// blockingWriter blocks every Write until release is closed.
type blockingWriter struct{ release chan struct{} }

func (b blockingWriter) Write(p []byte) (int, error) {
	<-b.release
	return len(p), nil
}

func TestCancelLeavesNoGoroutine(t *testing.T) {
	for _, algo := range []string{"zstd", "xz", "none"} {
		t.Run(algo, func(t *testing.T) {
			before := runtime.NumGoroutine()
			ctx, cancel := context.WithCancel(context.Background())
			bw := blockingWriter{make(chan struct{})}
			zw, err := compress.NewWriter(bw, algo, compress.Options{Context: ctx, Concurrency: 3, ChunkSize: 32 << 10, Level: 1})
			if err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() {
				data := sample(1 << 20)
				for {
					if _, err := zw.Write(data); err != nil {
						errc <- err
						return
					}
				}
			}()
			time.Sleep(50 * time.Millisecond) // let the pipeline fill and block
			cancel()
			// No writer can interrupt a destination's Write: Write and
			// Close return once the pending one does, as when a dead
			// link's connection is closed. Then no goroutine is left.
			close(bw.release)
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Errorf("Write after cancel: %v", err)
			}
			if err := zw.Close(); !errors.Is(err, context.Canceled) {
				t.Errorf("Close after cancel: %v", err)
			}
			waitGoroutines(t, before)
		})
	}
}

type failingWriter struct{ after int }

var errDisk = errors.New("disk full")

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errDisk
	}
	f.after--
	return len(p), nil
}

func TestWriteErrorStopsPipeline(t *testing.T) {
	before := runtime.NumGoroutine()
	zw, err := compress.NewWriter(&failingWriter{after: 2}, "zstd", compress.Options{Concurrency: 2, ChunkSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	data := sample(1 << 20)
	var werr error
	for range 10 {
		if _, werr = zw.Write(data); werr != nil {
			break
		}
	}
	if cerr := zw.Close(); !errors.Is(werr, errDisk) && !errors.Is(cerr, errDisk) {
		t.Fatalf("Write: %v, Close: %v; want %v", werr, cerr, errDisk)
	}
	waitGoroutines(t, before)
}

// countingBlockedWriter counts what it was handed, then blocks.
type countingBlockedWriter struct {
	release chan struct{}
}

func (c countingBlockedWriter) Write(p []byte) (int, error) {
	<-c.release
	return len(p), nil
}

// TestBytesInFlightBounded: with the output blocked, Write accepts no more
// than MaxInFlightBytes plus the chunk being filled.
func TestBytesInFlightBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const chunk, limit = 4 << 10, 64 << 10
		out := countingBlockedWriter{make(chan struct{})}
		zw, err := compress.NewWriter(out, "none", compress.Options{Concurrency: 2, ChunkSize: chunk, MaxInFlightBytes: limit})
		if err != nil {
			t.Fatal(err)
		}
		// The writer writes a finite amount, then closes: with the output
		// blocked it must park (durably, inside the bubble) once the
		// in-flight bound is reached.
		var accepted atomic.Int64
		done := make(chan error, 1)
		go func() {
			buf := make([]byte, 1000)
			for range 4 * limit / len(buf) {
				n, err := zw.Write(buf)
				accepted.Add(int64(n))
				if err != nil {
					done <- err
					return
				}
			}
			done <- zw.Close()
		}()
		synctest.Wait()
		if got := accepted.Load(); got > limit+chunk {
			t.Errorf("accepted %d bytes with the output blocked, limit %d", got, limit)
		} else if got < limit/2 {
			t.Errorf("accepted only %d bytes", got)
		}
		close(out.release)
		if err := <-done; err != nil {
			t.Errorf("Write/Close after release: %v", err)
		}
	})
}

// TestCorruptStreams: a stream cut short inside a frame, or followed by
// bytes that are not a frame, fails to read instead of ending early or
// quietly (a cut exactly between frames is a valid shorter stream; the
// NAR parser above finds that one).
func TestCorruptStreams(t *testing.T) {
	data := sample(300 << 10)
	for _, algo := range []string{"zstd", "xz"} {
		z := compressBytes(t, algo, data, compress.Options{Concurrency: 2, ChunkSize: 64 << 10, Level: 1})
		for _, c := range []struct {
			name string
			in   []byte
		}{
			{"one byte short", z[:len(z)-1]},
			{"cut in the first frame", z[:len(z)/10]},
			{"cut after the first header", z[:16]},
			{"trailing garbage", append(slices.Clone(z), "garbage, not a frame"...)},
			{"trailing zeros", append(slices.Clone(z), make([]byte, 3)...)},
		} {
			zr, err := compress.NewReader(bytes.NewReader(c.in), algo)
			if err != nil {
				continue // refused at once
			}
			got, err := io.ReadAll(zr)
			zr.Close()
			if err == nil {
				t.Errorf("%s, %s: read %d bytes without error", algo, c.name, len(got))
			}
		}
	}
}
