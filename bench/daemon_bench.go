package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/storetest"
)

// DaemonConn dials the local nix-daemon, or skips (fails in CI) without one.
func DaemonConn(tb testing.TB) *daemon.Conn {
	tb.Helper()
	storetest.RequireDaemon(tb)
	c, err := daemon.Dial(context.Background(), storetest.DaemonSocket, daemon.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// DaemonPaths returns up to n valid paths of the local store, sorted, and
// their path infos.
func DaemonPaths(tb testing.TB, c *daemon.Conn, n int) ([]store.Path, []*store.PathInfo) {
	tb.Helper()
	ents, err := os.ReadDir(store.StoreDir)
	if err != nil {
		tb.Fatal(err)
	}
	var ps []store.Path
	for _, e := range ents {
		if p, err := store.ParseBase(e.Name()); err == nil {
			ps = append(ps, p)
		}
	}
	valid, err := c.QueryValidPaths(context.Background(), ps, false)
	if err != nil {
		tb.Fatal(err)
	}
	store.SortPaths(valid)
	valid = valid[:min(n, len(valid))]
	infos, err := c.QueryPathInfos(context.Background(), valid)
	if err != nil {
		tb.Fatal(err)
	}
	return valid, infos
}

// LargestPaths returns the paths of infos whose NARs are largest, up to
// limit bytes in total, and that total.
func LargestPaths(infos []*store.PathInfo, limit uint64) ([]store.Path, uint64) {
	sorted := slices.Clone(infos)
	slices.SortFunc(sorted, func(a, b *store.PathInfo) int {
		if a.NarSize != b.NarSize {
			if a.NarSize > b.NarSize {
				return -1
			}
			return 1
		}
		return a.Path.Compare(b.Path)
	})
	var ps []store.Path
	var total uint64
	for _, info := range sorted {
		if total+info.NarSize > limit {
			continue
		}
		ps = append(ps, info.Path)
		total += info.NarSize
	}
	return ps, total
}

// DaemonBigPath adds (once; the contents are deterministic) a tree of
// files totalling about size bytes of incompressible data to the local
// store with `nix-store --add` and returns its path and NAR size.
func DaemonBigPath(tb testing.TB, c *daemon.Conn, size int) (store.Path, uint64) {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), fmt.Sprintf("nbuild-bench-nar-%d", size))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, uint64(size)))
	const fileSize = 4 << 20
	buf := make([]byte, fileSize)
	for i := 0; i*fileSize < size; i++ {
		for j := 0; j+8 <= len(buf); j += 8 {
			binary.LittleEndian.PutUint64(buf[j:], rng.Uint64())
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), buf, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	out, err := exec.Command("nix-store", "--add", dir).Output()
	if err != nil {
		tb.Fatalf("nix-store --add: %v", err)
	}
	p, err := store.ParsePath(strings.TrimSpace(string(out)))
	if err != nil {
		tb.Fatal(err)
	}
	info, err := c.QueryPathInfo(context.Background(), p)
	if err != nil {
		tb.Fatal(err)
	}
	return p, info.NarSize
}

// DaemonQueryValidPaths asks for the validity of all paths in one round
// trip per iteration.
func DaemonQueryValidPaths(b *testing.B, c *daemon.Conn, paths []store.Path) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		v, err := c.QueryValidPaths(ctx, paths, false)
		if err != nil || len(v) != len(paths) {
			b.Fatalf("%d valid, %v", len(v), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(paths)), "ns/path")
}

// DaemonQueryPathInfoSerial asks for each path's info in its own round
// trip, as Nix's client does.
func DaemonQueryPathInfoSerial(b *testing.B, c *daemon.Conn, paths []store.Path) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range paths {
			if _, err := c.QueryPathInfo(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(paths)), "ns/path")
}

// DaemonQueryPathInfos pipelines the requests for all paths.
func DaemonQueryPathInfos(b *testing.B, c *daemon.Conn, paths []store.Path) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.QueryPathInfos(ctx, paths); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(paths)), "ns/path")
}

// DaemonNarFromPath streams the NARs of paths (total bytes) to io.Discard.
func DaemonNarFromPath(b *testing.B, c *daemon.Conn, paths []store.Path, total uint64) {
	ctx := context.Background()
	b.SetBytes(int64(total))
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range paths {
			if err := c.NarFromPath(ctx, p, io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// NixStoreDump runs `nix-store --dump` for each path, output discarded.
func NixStoreDump(b *testing.B, paths []store.Path, total uint64) {
	b.SetBytes(int64(total))
	for b.Loop() {
		for _, p := range paths {
			cmd := exec.Command("nix-store", "--dump", p.String())
			cmd.Stdout = io.Discard
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// NixStoreQueryHash runs `nix-store -q --hash` once per path.
func NixStoreQueryHash(b *testing.B, paths []store.Path) {
	for b.Loop() {
		for _, p := range paths {
			if err := exec.Command("nix-store", "-q", "--hash", p.String()).Run(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(paths)), "ns/path")
}
