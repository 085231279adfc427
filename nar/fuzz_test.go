package nar_test

import (
	"bytes"
	"testing"

	"github.com/nbuild/nbuild/nar"
)

// FuzzReader: the Reader never panics, and every NAR it accepts is
// canonical: writing back what it read gives the same bytes, and Copy
// copies exactly those bytes.
func FuzzReader(f *testing.F) {
	f.Add(narOf(file("")))
	f.Add(narOf(file("hello, world")))
	f.Add(narOf(link("/nix/store/x")))
	f.Add(narOf(dir()))
	f.Add(narOf(dir(
		entry("a", file("1234567")),
		entry("b", dir(entry("c", link("../a")), entry("d", dir()))),
		entry("x", []string{"(", "type", "regular", "executable", "", "contents", "12345678", ")"}),
	)))
	for _, c := range badCases() {
		if len(c.data) < 1<<12 {
			f.Add(c.data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		opts := nar.ReaderOptions{MaxEntrySize: 1 << 20}
		if err := readAll(data, opts); err != nil {
			return
		}
		got, err := rewriteErr(data)
		if err != nil {
			t.Fatalf("rewrite of an accepted NAR failed: %v", err)
		}
		// data may continue after the NAR; the NAR is a prefix.
		if !bytes.HasPrefix(data, got) {
			t.Fatalf("write(read(x)) is not x's NAR")
		}
		var cp bytes.Buffer
		n, err := nar.CopyOptions(&cp, bytes.NewReader(data), opts)
		if err != nil || n != int64(len(got)) || !bytes.Equal(cp.Bytes(), got) {
			t.Fatalf("Copy = %d, %v; want %d bytes", n, err, len(got))
		}
		l, err := nar.List(bytes.NewReader(got))
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if _, err := l.MarshalJSON(); err != nil {
			t.Fatal(err)
		}
	})
}
