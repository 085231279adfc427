package bench

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	gonar "github.com/nix-community/go-nix/pkg/nar"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/nar/compress"
)

// NarCorpus is a tree on disk and its NAR in memory.
type NarCorpus struct {
	Name    string
	Dir     string // "" for a generated NAR with no tree on disk
	NAR     []byte
	Entries int // headers in the NAR (files, directories, symlinks)
}

var goroot = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	return strings.TrimSpace(string(out)), err
})

// GorootCorpus is the NAR of dir inside GOROOT (e.g. "src/fmt", "src"),
// named name: the Go distribution is real, varied source and binaries and
// is on every machine that runs these benchmarks.
func GorootCorpus(tb testing.TB, name, dir string) NarCorpus {
	tb.Helper()
	root, err := goroot()
	if err != nil {
		tb.Fatalf("go env GOROOT: %v", err)
	}
	c := NarCorpus{Name: name, Dir: filepath.Join(root, dir)}
	var buf bytes.Buffer
	if err := nar.DumpPath(&buf, c.Dir); err != nil {
		tb.Fatal(err)
	}
	c.NAR = buf.Bytes()
	c.Entries = countEntries(tb, c.NAR)
	return c
}

// ManyFilesCorpus is a generated NAR of n small files (size bytes each)
// spread over directories of 100: it measures what each entry costs.
func ManyFilesCorpus(tb testing.TB, n, size int) NarCorpus {
	tb.Helper()
	var buf bytes.Buffer
	w := nar.NewWriter(&buf)
	must := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	must(w.WriteHeader(&nar.Header{Type: nar.TypeDirectory}))
	body := bytes.Repeat([]byte{'x'}, size)
	for d := 0; d*100 < n; d++ {
		dir := fmt.Sprintf("d%05d", d)
		must(w.WriteHeader(&nar.Header{Path: dir, Type: nar.TypeDirectory}))
		for f := d * 100; f < min(n, (d+1)*100); f++ {
			must(w.WriteHeader(&nar.Header{Path: fmt.Sprintf("%s/f%06d", dir, f), Type: nar.TypeRegular, Size: int64(size)}))
			_, err := w.Write(body)
			must(err)
		}
	}
	must(w.Close())
	c := NarCorpus{Name: fmt.Sprintf("files-%d", n), NAR: buf.Bytes()}
	c.Entries = countEntries(tb, c.NAR)
	return c
}

func countEntries(tb testing.TB, data []byte) int {
	tb.Helper()
	n, err := readNbuild(data)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// readNbuild reads every header and every file's contents.
func readNbuild(data []byte) (int, error) {
	r := nar.NewReader(bytes.NewReader(data))
	return readEntries(r, func() (bool, error) {
		h, err := r.Next()
		return err == nil && h.Type == nar.TypeRegular, err
	})
}

func readGoNix(data []byte) (int, error) {
	r, err := gonar.NewReader(bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	defer r.Close()
	return readEntries(r, func() (bool, error) {
		h, err := r.Next()
		return err == nil && h.Type == gonar.TypeRegular, err
	})
}

// readEntries calls next until io.EOF, reading r after each regular file,
// and returns the number of entries.
func readEntries(r io.Reader, next func() (regular bool, err error)) (int, error) {
	for n := 0; ; n++ {
		regular, err := next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if regular {
			if _, err := io.Copy(io.Discard, r); err != nil {
				return n, err
			}
		}
	}
}

// NarDumpHash computes the NAR hash of c's tree (walk, read, serialise,
// SHA-256), as `nbuild nar hash` does.
func NarDumpHash(b *testing.B, c NarCorpus) {
	b.SetBytes(int64(len(c.NAR)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := nar.HashPath(c.Dir); err != nil {
			b.Fatal(err)
		}
	}
}

// NarSHA256 only hashes c's NAR, already in memory: the ceiling of
// NarDumpHash on one core.
func NarSHA256(b *testing.B, c NarCorpus) {
	b.SetBytes(int64(len(c.NAR)))
	b.ReportAllocs()
	for b.Loop() {
		sha256.Sum256(c.NAR)
	}
}

// NarRead parses c's NAR with nbuild's reader, reading every file.
func NarRead(b *testing.B, c NarCorpus) { narRead(b, c, readNbuild) }

// NarReadGoNix is NarRead with go-nix's reader on the same bytes.
func NarReadGoNix(b *testing.B, c NarCorpus) { narRead(b, c, readGoNix) }

func narRead(b *testing.B, c NarCorpus, read func([]byte) (int, error)) {
	b.SetBytes(int64(len(c.NAR)))
	b.ReportAllocs()
	iters := 0
	for b.Loop() {
		if n, err := read(c.NAR); err != nil || n != c.Entries {
			b.Fatalf("%d entries, %v; want %d", n, err, c.Entries)
		}
		iters++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(iters*c.Entries), "ns/entry")
}

// NarCompress compresses data with algo at the given level and
// concurrency, reusing one Writer as a binary cache uploading many NARs
// would, and reports the ratio (compressed/original).
func NarCompress(b *testing.B, algo string, data []byte, level, conc int) {
	var out bytes.Buffer
	zw, err := compress.NewWriter(&out, algo, compress.Options{Level: level, Concurrency: conc})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		out.Reset()
		zw.Reset(&out)
		if _, err := zw.Write(data); err != nil {
			b.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(out.Len())/float64(len(data)), "ratio")
}

// NarSlice returns n bytes of c's NAR taken as several evenly spaced
// pieces, so that a slice of a large NAR mixes its kinds of content.
func NarSlice(c NarCorpus, n int) []byte {
	if n >= len(c.NAR) {
		return c.NAR
	}
	const pieces = 8
	out := make([]byte, 0, n)
	step := len(c.NAR) / pieces
	for i := range pieces {
		k := n/pieces + boolInt(i < n%pieces)
		out = append(out, c.NAR[i*step:i*step+k]...)
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
