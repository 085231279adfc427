package compress_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/nbuild/nbuild/nar/compress"
)

// FuzzDecompress: the xz and zstd readers take bytes from caches and
// peers; on any input they return data or an error, never panic, and a
// stream we wrote (several concatenated streams) reads back.
func FuzzDecompress(f *testing.F) {
	for _, algo := range []string{"xz", "zstd"} {
		for _, size := range []int{0, 1, 100, 5000} {
			data := sample(size)
			z := compressBytes(f, algo, data, compress.Options{Concurrency: 1, ChunkSize: 2048, Level: 1})
			f.Add(algo == "xz", z)
			if len(z) > 20 {
				f.Add(algo == "xz", z[:len(z)/2])                 // truncated
				f.Add(algo == "xz", append(z[:len(z):len(z)], 0)) // trailing byte
			}
		}
	}
	f.Fuzz(func(t *testing.T, xz bool, in []byte) {
		algo := "zstd"
		if xz {
			algo = "xz"
		}
		zr, err := compress.NewReader(bytes.NewReader(in), algo)
		if err != nil {
			return
		}
		defer zr.Close()
		// Bounded: a small input may claim a huge output.
		out, err := io.ReadAll(io.LimitReader(zr, 8<<20))
		if err != nil {
			return
		}
		// What was accepted compresses and reads back.
		z := compressBytes(t, algo, out, compress.Options{Concurrency: 1, ChunkSize: 4096, Level: 1})
		if back := decompress(t, algo, z); !bytes.Equal(back, out) {
			t.Fatalf("%s: round trip of %d accepted bytes differs", algo, len(out))
		}
	})
}
