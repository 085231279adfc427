package serve

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
)

// BenchmarkReadPathInfos decodes a 3,000-entry QueryPathInfos reply
// (client side only).
func BenchmarkReadPathInfos(b *testing.B) {
	var infos []*store.PathInfo
	for i := range 3000 {
		var d [store.DigestSize]byte
		d[0], d[1] = byte(i), byte(i>>8)
		p, _ := store.NewPath(d, "bench-path-"+strconv.Itoa(i))
		info := &store.PathInfo{Path: p, NarSize: uint64(i), Deriver: pB, References: []store.Path{pA, pB, p}}
		store.SortPaths(info.References)
		infos = append(infos, info)
	}
	data := appendPathInfos(nil, infos)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		got, err := readPathInfos(wire.NewReader(bytes.NewReader(data)), 7, 3000)
		if err != nil || len(got) != 3000 {
			b.Fatal(err)
		}
	}
}
