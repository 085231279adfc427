package bench

import (
	"fmt"
	"testing"
)

// narTrees are the dump and read workloads by size: a small package, a
// large one, and the whole Go source tree.
func narTrees(b *testing.B) []NarCorpus {
	return []NarCorpus{
		GorootCorpus(b, "fmt", "src/fmt"),
		GorootCorpus(b, "net", "src/net"),
		GorootCorpus(b, "src", "src"),
	}
}

func BenchmarkNarDumpHash(b *testing.B) {
	for _, c := range narTrees(b) {
		b.Run(c.Name, func(b *testing.B) { NarDumpHash(b, c) })
		b.Run(c.Name+"/sha256-only", func(b *testing.B) { NarSHA256(b, c) })
	}
}

// BenchmarkNarRead compares nbuild's reader with go-nix's on the same
// NARs; files-N (tiny files) shows the per-entry cost.
func BenchmarkNarRead(b *testing.B) {
	cs := append(narTrees(b), ManyFilesCorpus(b, 20000, 16))
	for _, c := range cs {
		b.Run(c.Name+"/nbuild", func(b *testing.B) { NarRead(b, c) })
		b.Run(c.Name+"/go-nix", func(b *testing.B) { NarReadGoNix(b, c) })
	}
}

// BenchmarkNarCompress: zstd (level 3) and xz (level 6) at concurrency 1
// and 2, on 4 MiB and 32 MiB of the Go source NAR.
func BenchmarkNarCompress(b *testing.B) {
	src := GorootCorpus(b, "src", "src")
	for _, size := range []int{4 << 20, 32 << 20} {
		data := NarSlice(src, size)
		for _, algo := range []struct {
			name  string
			level int
		}{{"zstd", 3}, {"xz", 6}} {
			for _, conc := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/%dMiB/c%d", algo.name, size>>20, conc), func(b *testing.B) {
					NarCompress(b, algo.name, data, algo.level, conc)
				})
			}
		}
	}
}
