package bench

import (
	"fmt"
	"testing"

	"github.com/nbuild/nbuild/store"
)

// BenchmarkDaemonQuery: validity and path infos of 3,000 local-store paths
// through the worker protocol (one round trip; one per path; pipelined),
// and `nix-store -q --hash` per path on a 100-path sample (ns/path
// compares them).
func BenchmarkDaemonQuery(b *testing.B) {
	c := DaemonConn(b)
	paths, _ := DaemonPaths(b, c, 3000)
	n := len(paths)
	b.Run(fmt.Sprintf("paths=%d/QueryValidPaths", n), func(b *testing.B) { DaemonQueryValidPaths(b, c, paths) })
	b.Run(fmt.Sprintf("paths=%d/QueryPathInfo-serial", n), func(b *testing.B) { DaemonQueryPathInfoSerial(b, c, paths) })
	b.Run(fmt.Sprintf("paths=%d/QueryPathInfos-pipelined", n), func(b *testing.B) { DaemonQueryPathInfos(b, c, paths) })
	sample := paths[:min(100, n)]
	b.Run(fmt.Sprintf("paths=%d/nix-store-q-hash", len(sample)), func(b *testing.B) { NixStoreQueryHash(b, sample) })
}

// BenchmarkDaemonNar: NAR export throughput, NarFromPath against
// `nix-store --dump`, of one 64 MiB path (bulk throughput) and of 100
// paths of the local store (per-path overhead).
func BenchmarkDaemonNar(b *testing.B) {
	c := DaemonConn(b)
	big, size := DaemonBigPath(b, c, 64<<20)
	// 100 paths spread over the store (every 30th in hash order).
	all, infos := DaemonPaths(b, c, 3000)
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
	for _, s := range sets {
		b.Run(s.name+"/NarFromPath", func(b *testing.B) { DaemonNarFromPath(b, c, s.paths, s.bytes) })
		b.Run(s.name+"/nix-store-dump", func(b *testing.B) { NixStoreDump(b, s.paths, s.bytes) })
	}
}
