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
)

// DaemonConn dials the nix-daemon listening at socket (store.DaemonSocket
// for the machine's own). Without a socket there the error wraps
// fs.ErrNotExist and says so. The caller closes the connection.
func DaemonConn(ctx context.Context, socket string) (*daemon.Conn, error) {
	if fi, err := os.Stat(socket); err != nil {
		return nil, fmt.Errorf("bench: no nix-daemon socket: %w", err)
	} else if fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("bench: %s is not a socket (is nix-daemon running?)", socket)
	}
	return daemon.Dial(ctx, socket, daemon.Options{})
}

// DaemonPaths returns up to n valid paths of c's store, sorted, and their
// path infos. storeDir is where that store's paths can be listed
// (store.StoreDir for the machine's own daemon): the worker protocol has
// no "list every path" request.
func DaemonPaths(ctx context.Context, c *daemon.Conn, storeDir string, n int) ([]store.Path, []*store.PathInfo, error) {
	ents, err := os.ReadDir(storeDir)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: daemon paths: %w", err)
	}
	var ps []store.Path
	for _, e := range ents {
		if p, err := store.ParseBase(e.Name()); err == nil {
			ps = append(ps, p)
		}
	}
	valid, err := c.QueryValidPaths(ctx, ps, false)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: daemon paths: %w", err)
	}
	store.SortPaths(valid)
	valid = valid[:min(n, len(valid))]
	infos, err := c.QueryPathInfos(ctx, valid)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: daemon paths: %w", err)
	}
	return valid, infos, nil
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
// store with `nix-store --add` and returns its path and NAR size. The
// tree is written under scratch (a directory the caller owns) and removed
// after. Without nix-store on PATH the error wraps exec.ErrNotFound.
func DaemonBigPath(ctx context.Context, c *daemon.Conn, scratch string, size int) (store.Path, uint64, error) {
	nixStore, err := exec.LookPath("nix-store")
	if err != nil {
		return store.Path{}, 0, fmt.Errorf("bench: big path needs Nix: %w", err)
	}
	tmp, err := os.MkdirTemp(scratch, "bench")
	if err != nil {
		return store.Path{}, 0, err
	}
	defer os.RemoveAll(tmp)
	// The name is part of the store path, so it must not vary with tmp.
	dir := filepath.Join(tmp, fmt.Sprintf("nbuild-bench-nar-%d", size))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return store.Path{}, 0, err
	}
	rng := rand.New(rand.NewPCG(1, uint64(size)))
	const fileSize = 4 << 20
	buf := make([]byte, fileSize)
	for i := 0; i*fileSize < size; i++ {
		for j := 0; j+8 <= len(buf); j += 8 {
			binary.LittleEndian.PutUint64(buf[j:], rng.Uint64())
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), buf, 0o644); err != nil {
			return store.Path{}, 0, err
		}
	}
	out, err := exec.CommandContext(ctx, nixStore, "--add", dir).Output()
	if err != nil {
		return store.Path{}, 0, fmt.Errorf("bench: nix-store --add: %w", err)
	}
	p, err := store.ParsePath(strings.TrimSpace(string(out)))
	if err != nil {
		return store.Path{}, 0, fmt.Errorf("bench: nix-store --add: %w", err)
	}
	info, err := c.QueryPathInfo(ctx, p)
	if err != nil {
		return store.Path{}, 0, fmt.Errorf("bench: big path: %w", err)
	}
	return p, info.NarSize, nil
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

// daemonCase is a case that dials its own connection, so that a case run
// alone (testing.Benchmark) owns and closes what it uses.
func daemonCase(env Env, name string, run func(b *testing.B, c *daemon.Conn)) Case {
	return Case{name, func(b *testing.B) {
		c, err := DaemonConn(b.Context(), env.daemonSocket())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		run(b, c)
	}}
}

// daemonQueryCases: validity and path infos of 3,000 local-store paths
// through the worker protocol (one round trip; one per path; pipelined),
// and `nix-store -q --hash` per path on a 100-path sample (ns/path
// compares them).
func daemonQueryCases(ctx context.Context, env Env) ([]Case, error) {
	c, err := DaemonConn(ctx, env.daemonSocket())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	paths, _, err := DaemonPaths(ctx, c, env.storeDir(), 3000)
	if err != nil {
		return nil, err
	}
	n := len(paths)
	sample := paths[:min(100, n)]
	return []Case{
		daemonCase(env, fmt.Sprintf("paths=%d/QueryValidPaths", n), func(b *testing.B, c *daemon.Conn) { DaemonQueryValidPaths(b, c, paths) }),
		daemonCase(env, fmt.Sprintf("paths=%d/QueryPathInfo-serial", n), func(b *testing.B, c *daemon.Conn) { DaemonQueryPathInfoSerial(b, c, paths) }),
		daemonCase(env, fmt.Sprintf("paths=%d/QueryPathInfos-pipelined", n), func(b *testing.B, c *daemon.Conn) { DaemonQueryPathInfos(b, c, paths) }),
		{fmt.Sprintf("paths=%d/nix-store-q-hash", len(sample)), func(b *testing.B) { NixStoreQueryHash(b, sample) }},
	}, nil
}

// daemonNarCases: NAR export throughput, NarFromPath against
// `nix-store --dump`, of one 64 MiB path (bulk throughput) and of 100
// paths of the local store (per-path overhead).
func daemonNarCases(ctx context.Context, env Env) ([]Case, error) {
	c, err := DaemonConn(ctx, env.daemonSocket())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	big, size, err := DaemonBigPath(ctx, c, env.tempDir(), 64<<20)
	if err != nil {
		return nil, err
	}
	// 100 paths spread over the store (every 30th in hash order).
	all, infos, err := DaemonPaths(ctx, c, env.storeDir(), 3000)
	if err != nil {
		return nil, err
	}
	var small []store.Path
	var total uint64
	for i := 0; i < len(all) && len(small) < 100; i += 30 {
		small = append(small, all[i])
		total += infos[i].NarSize
	}
	sets := []struct {
		name  string
		paths []store.Path
		bytes uint64
	}{
		{fmt.Sprintf("paths=1,bytes=%d", size), []store.Path{big}, size},
		{fmt.Sprintf("paths=%d,bytes=%d", len(small), total), small, total},
	}
	var cases []Case
	for _, s := range sets {
		cases = append(cases,
			daemonCase(env, s.name+"/NarFromPath", func(b *testing.B, c *daemon.Conn) { DaemonNarFromPath(b, c, s.paths, s.bytes) }),
			Case{s.name + "/nix-store-dump", func(b *testing.B) { NixStoreDump(b, s.paths, s.bytes) }})
	}
	return cases, nil
}
