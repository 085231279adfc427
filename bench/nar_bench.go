package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
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

// Goroot returns the Go distribution's root as `go env GOROOT` reports it
// (runtime.GOROOT is deprecated and empty under -trimpath). Without the go
// command on PATH the error wraps exec.ErrNotFound.
func Goroot() (string, error) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("bench: go env GOROOT: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// TreeCorpus is the NAR of the tree at dir, named name. The benchmarks
// use directories of GOROOT (Goroot), which is real, varied source and
// binaries and is on every machine that runs them.
func TreeCorpus(name, dir string) (NarCorpus, error) {
	c := NarCorpus{Name: name, Dir: dir}
	var buf bytes.Buffer
	if err := nar.DumpPath(&buf, c.Dir); err != nil {
		return NarCorpus{}, fmt.Errorf("bench: nar corpus %s: %w", name, err)
	}
	c.NAR = buf.Bytes()
	n, err := readNbuild(c.NAR)
	if err != nil {
		return NarCorpus{}, fmt.Errorf("bench: nar corpus %s: %w", name, err)
	}
	c.Entries = n
	return c, nil
}

// ManyFilesCorpus is a generated NAR of n small files (size bytes each)
// spread over directories of 100: it measures what each entry costs.
func ManyFilesCorpus(n, size int) (NarCorpus, error) {
	var buf bytes.Buffer
	w := nar.NewWriter(&buf)
	if err := w.WriteHeader(&nar.Header{Type: nar.TypeDirectory}); err != nil {
		return NarCorpus{}, err
	}
	body := bytes.Repeat([]byte{'x'}, size)
	for d := 0; d*100 < n; d++ {
		dir := fmt.Sprintf("d%05d", d)
		if err := w.WriteHeader(&nar.Header{Path: dir, Type: nar.TypeDirectory}); err != nil {
			return NarCorpus{}, err
		}
		for f := d * 100; f < min(n, (d+1)*100); f++ {
			if err := w.WriteHeader(&nar.Header{Path: fmt.Sprintf("%s/f%06d", dir, f), Type: nar.TypeRegular, Size: int64(size)}); err != nil {
				return NarCorpus{}, err
			}
			if _, err := w.Write(body); err != nil {
				return NarCorpus{}, err
			}
		}
	}
	if err := w.Close(); err != nil {
		return NarCorpus{}, err
	}
	c := NarCorpus{Name: fmt.Sprintf("files-%d", n), NAR: buf.Bytes()}
	entries, err := readNbuild(c.NAR)
	if err != nil {
		return NarCorpus{}, fmt.Errorf("bench: many-files corpus: %w", err)
	}
	c.Entries = entries
	return c, nil
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

// narTrees are the dump and read corpora by size: a small package, a
// large one, and the whole Go source tree.
func narTrees(env Env) ([]NarCorpus, error) {
	goroot, err := env.goroot()
	if err != nil {
		return nil, err
	}
	var cs []NarCorpus
	for _, t := range []struct{ name, dir string }{{"fmt", "src/fmt"}, {"net", "src/net"}, {"src", "src"}} {
		c, err := TreeCorpus(t.name, filepath.Join(goroot, t.dir))
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, nil
}

func narDumpHashCases(_ context.Context, env Env) ([]Case, error) {
	trees, err := narTrees(env)
	if err != nil {
		return nil, err
	}
	var cases []Case
	for _, c := range trees {
		cases = append(cases,
			Case{c.Name, func(b *testing.B) { NarDumpHash(b, c) }},
			Case{c.Name + "/sha256-only", func(b *testing.B) { NarSHA256(b, c) }})
	}
	return cases, nil
}

// narReadCases compare nbuild's reader with go-nix's on the same NARs;
// files-N (tiny files) shows the per-entry cost.
func narReadCases(_ context.Context, env Env) ([]Case, error) {
	trees, err := narTrees(env)
	if err != nil {
		return nil, err
	}
	many, err := ManyFilesCorpus(20000, 16)
	if err != nil {
		return nil, err
	}
	var cases []Case
	for _, c := range append(trees, many) {
		cases = append(cases,
			Case{c.Name + "/nbuild", func(b *testing.B) { NarRead(b, c) }},
			Case{c.Name + "/go-nix", func(b *testing.B) { NarReadGoNix(b, c) }})
	}
	return cases, nil
}

// narCompressCases: zstd (level 3) and xz (level 6) at concurrency 1 and
// 2, on 4 MiB and 32 MiB of the Go source NAR.
func narCompressCases(_ context.Context, env Env) ([]Case, error) {
	goroot, err := env.goroot()
	if err != nil {
		return nil, err
	}
	src, err := TreeCorpus("src", filepath.Join(goroot, "src"))
	if err != nil {
		return nil, err
	}
	var cases []Case
	for _, size := range []int{4 << 20, 32 << 20} {
		data := NarSlice(src, size)
		for _, algo := range []struct {
			name  string
			level int
		}{{"zstd", 3}, {"xz", 6}} {
			for _, conc := range []int{1, 2} {
				cases = append(cases, Case{fmt.Sprintf("%s/%dMiB/c%d", algo.name, size>>20, conc), func(b *testing.B) {
					NarCompress(b, algo.name, data, algo.level, conc)
				}})
			}
		}
	}
	return cases, nil
}
