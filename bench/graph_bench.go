package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"github.com/nbuild/nbuild/bench/gen/graphgen"
	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/store"
)

// GraphCorpus returns the synthetic closure of n derivations (package
// graphgen) kept in cacheDir/graph-n (graphgen.CacheDir() in the
// benchmarks), instantiating it with real Nix the first time. Without
// nix-instantiate, and no corpus cached, the error wraps exec.ErrNotFound.
func GraphCorpus(ctx context.Context, cacheDir string, n int) (*graphgen.Corpus, error) {
	dir := filepath.Join(cacheDir, fmt.Sprintf("graph-%d", n))
	return graphgen.Instantiate(ctx, dir, graphgen.Params{N: n})
}

// GraphLoad benchmarks graph.Load of a corpus's whole closure; bytes are
// the .drv files' total size.
func GraphLoad(b *testing.B, c *graphgen.Corpus, opts graph.Options) {
	root, err := store.ParsePath(c.Root)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(c.DrvBytes)
	ctx := context.Background()
	for b.Loop() {
		g, err := graph.Load(ctx, c.Dir, []store.Path{root}, opts)
		if err != nil {
			b.Fatal(err)
		}
		if g.Len() != c.Drvs {
			b.Fatalf("loaded %d derivations, the corpus has %d", g.Len(), c.Drvs)
		}
	}
}

// GraphLoadSnapshot benchmarks graph.Load of a corpus's closure from a
// snapshot (Options.SnapshotDir, saved by a first load outside the loop);
// bytes are the .drv files' total size, as for GraphLoad, so the MB/s
// compare.
func GraphLoadSnapshot(b *testing.B, c *graphgen.Corpus) {
	root, err := store.ParsePath(c.Root)
	if err != nil {
		b.Fatal(err)
	}
	opts := graph.Options{SnapshotDir: b.TempDir()}
	ctx := context.Background()
	if _, err := graph.Load(ctx, c.Dir, []store.Path{root}, opts); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(c.DrvBytes)
	for b.Loop() {
		g, err := graph.Load(ctx, c.Dir, []store.Path{root}, opts)
		if err != nil {
			b.Fatal(err)
		}
		if !g.FromSnapshot() || g.Len() != c.Drvs {
			b.Fatalf("snapshot: %v, %d derivations", g.FromSnapshot(), g.Len())
		}
	}
}

// GraphParseOnly parses every .drv file of a corpus from memory with one
// reused drv.Parser (ParseShared, as the loader does): the parsing part of
// GraphLoad, without file reads or
// graph building, to show where a load's time goes.
func GraphParseOnly(b *testing.B, c *graphgen.Corpus) {
	dir := filepath.Join(c.Dir, store.StoreDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var files [][]byte
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".drv") {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				b.Fatal(err)
			}
			files = append(files, data)
		}
	}
	b.ReportAllocs()
	b.SetBytes(c.DrvBytes)
	var p drv.Parser
	for b.Loop() {
		for _, data := range files {
			if _, err := p.ParseShared(data); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// GraphReadOnly reads every .drv file of a corpus the way the loader does
// (openat(2) relative to the store directory, one read(2) into a reused
// buffer, close(2)) on workers goroutines, parsing nothing: the system-call
// floor under GraphLoad.
func GraphReadOnly(b *testing.B, c *graphgen.Corpus, workers int) {
	dir, err := os.Open(filepath.Join(c.Dir, store.StoreDir))
	if err != nil {
		b.Fatal(err)
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		b.Fatal(err)
	}
	var cnames [][]byte // NUL-terminated, so the loop allocates nothing
	for _, n := range names {
		if strings.HasSuffix(n, ".drv") {
			cnames = append(cnames, append([]byte(n), 0))
		}
	}
	dirfd := dir.Fd()
	b.ReportAllocs()
	b.SetBytes(c.DrvBytes)
	for b.Loop() {
		var wg sync.WaitGroup
		var failed atomic.Value
		for w := range workers {
			wg.Go(func() {
				buf := make([]byte, 64<<10)
				for i := w; i < len(cnames); i += workers {
					fd, _, errno := syscall.Syscall6(syscall.SYS_OPENAT, dirfd, uintptr(unsafe.Pointer(&cnames[i][0])),
						syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0, 0, 0)
					if errno != 0 {
						failed.Store(error(errno))
						return
					}
					_, err := syscall.Read(int(fd), buf)
					syscall.Close(int(fd))
					if err != nil {
						failed.Store(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
	}
}

// graphLoadCases load generated closures of several sizes, with the
// default concurrency and with one worker, beside parsing the same files
// from memory on one goroutine, reading them without parsing on
// GOMAXPROCS goroutines, and loading the closure from a snapshot.
func graphLoadCases(ctx context.Context, env Env) ([]Case, error) {
	var cases []Case
	for _, n := range []int{500, 3500, 20000} {
		c, err := GraphCorpus(ctx, env.cacheDir(), n)
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("drvs=%d", c.Drvs)
		cases = append(cases,
			Case{name, func(b *testing.B) { GraphLoad(b, c, graph.Options{}) }},
			Case{name + "/workers=1", func(b *testing.B) { GraphLoad(b, c, graph.Options{Concurrency: 1}) }},
			Case{name + "/parse-only", func(b *testing.B) { GraphParseOnly(b, c) }},
			Case{name + "/read-only", func(b *testing.B) { GraphReadOnly(b, c, runtime.GOMAXPROCS(0)) }},
			Case{name + "/snapshot", func(b *testing.B) { GraphLoadSnapshot(b, c) }})
	}
	return cases, nil
}
