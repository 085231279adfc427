package binarycache

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/storetest"
)

// BenchmarkAddToStoreNar writes the NAR of a real source tree
// (/usr/local/go/src/cmd/compile, about 20 MB) into a fresh cache per
// iteration, to separate the cache writer's cost from that of reading
// the NAR from a store in `nbuild copy --to file://`.
func BenchmarkAddToStoreNar(b *testing.B) {
	const tree = "/usr/local/go/src/cmd/compile"
	if _, err := os.Stat(tree); err != nil {
		b.Skip(tree + " not present")
	}
	storetest.RequireNix(b)
	data, err := exec.Command("nix-store", "--dump", tree).Output()
	if err != nil {
		b.Fatal(err)
	}
	hw := nar.NewHashingWriter(nil)
	hw.Write(data)
	info := &store.PathInfo{
		Path:    store.MustParsePath("/nix/store/4l046rp0c8xl0q1fabjjs3zv3jdxl6ix-compile"),
		NarHash: hw.Sum(),
		NarSize: uint64(len(data)),
	}
	ctx := context.Background()
	for _, comp := range compressions {
		b.Run(comp, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				dir := b.TempDir()
				c, err := Open(dir, Options{Compression: comp})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := c.AddToStoreNar(ctx, info, bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
