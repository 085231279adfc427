package serve_test

import (
	"io"
	"os"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/serve"
	"github.com/nbuild/nbuild/store/storetest"
	"github.com/nbuild/nbuild/store/testhost"
)

// BenchmarkQueryPathInfos: one QueryPathInfos request for every valid
// path of the machine's store (up to 3,000), over a local
// `nix-store --serve`.
func BenchmarkQueryPathInfos(b *testing.B) {
	c := machineServer(b)
	paths := machinePathsB(b, c, 3000)
	b.ReportAllocs()
	for b.Loop() {
		infos, err := c.QueryPathInfos(ctxT(b), paths)
		if err != nil || len(infos) != len(paths) {
			b.Fatal(len(infos), err)
		}
	}
	b.ReportMetric(float64(len(paths)), "paths/op")
}

// BenchmarkDumpStorePath streams the largest NARs of the machine's store.
func BenchmarkDumpStorePath(b *testing.B) {
	c := machineServer(b)
	paths := machinePathsB(b, c, 3000)
	infos, err := c.QueryPathInfos(ctxT(b), paths)
	if err != nil {
		b.Fatal(err)
	}
	var total uint64
	var big []store.Path
	for _, info := range infos {
		if info.NarSize > 64<<10 {
			big = append(big, info.Path)
			total += info.NarSize
		}
	}
	if len(big) == 0 {
		b.Skip("no NAR over 64 KiB")
	}
	b.SetBytes(int64(total))
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range big {
			if _, err := c.DumpStorePath(ctxT(b), p, io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkAddToStoreNarsLink uploads 20 small paths to a test host over
// a 100 Mbit/s link with 10 ms each way, pipelined and stop-and-wait (a
// window of one path, as nix-copy-closure does).
func BenchmarkAddToStoreNarsLink(b *testing.B) {
	h := testhost.New(b, testhost.Options{})
	r := testhost.NewRelay(b, h.HostAddr(), testhost.RelayOptions{RateBytesPerSec: 12_500_000, Delay: 10 * time.Millisecond})
	for _, mode := range []struct {
		name   string
		window int64
	}{{"pipelined", 0}, {"stop-and-wait", 1}} {
		b.Run(mode.name, func(b *testing.B) {
			o := sshOpts(h, r.Port)
			o.Client.MaxInFlightBytes = mode.window
			c, err := serve.Dial(ctxT(b), h.Addr, o)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				objs := chain(b, 20, "bench-"+mode.name)
				b.StartTimer()
				if err := c.AddToStoreNars(ctxT(b), sources(objs), serve.AddOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// machineValid returns the valid paths of this machine's store, found
// in one QueryValidPaths round trip; benchmarks want a real store's
// thousands of paths and skip when it has none.
func machineValid(t testing.TB, c *serve.Client) []store.Path {
	t.Helper()
	entries, err := os.ReadDir(store.StoreDir)
	if err != nil {
		t.Fatal(err)
	}
	var cands []store.Path
	for _, e := range entries {
		if p, err := store.ParseBase(e.Name()); err == nil {
			cands = append(cands, p)
		}
	}
	valid, err := c.QueryValidPaths(ctxT(t), cands, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(valid) == 0 {
		t.Skip("no valid paths in the machine's store")
	}
	store.SortPaths(valid)
	return valid
}

func machinePathsB(b *testing.B, c *serve.Client, n int) []store.Path {
	b.Helper()
	storetest.RequireNix(b)
	all := machineValid(b, c)
	return all[:min(n, len(all))]
}

// BenchmarkDumpStorePathsLink downloads 20 small paths from a test host
// over a 100 Mbit/s, 10 ms-each-way link: pipelined, and one request at a
// time (as nix-copy-closure --from does).
func BenchmarkDumpStorePathsLink(b *testing.B) {
	h := testhost.New(b, testhost.Options{})
	r := testhost.NewRelay(b, h.HostAddr(), testhost.RelayOptions{RateBytesPerSec: 12_500_000, Delay: 10 * time.Millisecond})
	c := sshServer(b, h, r.Port)
	objs := chain(b, 20, "bench-dump")
	if err := c.AddToStoreNars(ctxT(b), sources(objs), serve.AddOptions{}); err != nil {
		b.Fatal(err)
	}
	paths := make([]store.Path, len(objs))
	for i, o := range objs {
		paths[i] = o.Info.Path
	}
	discard := func(store.Path) (io.Writer, error) { return io.Discard, nil }
	b.Run("pipelined", func(b *testing.B) {
		for b.Loop() {
			if err := c.DumpStorePaths(ctxT(b), paths, discard); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one-by-one", func(b *testing.B) {
		for b.Loop() {
			for _, p := range paths {
				if _, err := c.DumpStorePath(ctxT(b), p, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
