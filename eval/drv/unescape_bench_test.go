package drv

import (
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store"
)

func benchUnescape(b *testing.B, s string) {
	d := &Derivation{Outputs: []Output{{Name: "out", Path: store.MustParsePath(outPath)}}, Platform: "p", Builder: s}
	text := d.AppendATerm(nil)
	start := strings.Index(string(text), `"p",`) + 4
	r := start + strings.IndexByte(string(text[start:]), '\\')
	dst := make([]byte, len(text)+8)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		w, q, ok := unescapeTo(dst, 0, text, r)
		if !ok || text[q] != '"' || w == 0 {
			b.Fatal("bad")
		}
	}
}

func BenchmarkUnescapeScript(b *testing.B) {
	line := "  if [ -n \"$out\" ]; then echo \"building \\\"$name\\\"\\tin $PWD\"; fi\n"
	benchUnescape(b, "\\"+strings.Repeat(line, 64<<10/len(line)))
}

func BenchmarkUnescapePhase(b *testing.B) {
	line := "strip bz-font --prefix=$out/avahi \"${NIX_CFLAGS_COMPILE:-}\" \\\"quoted\\\"\nchmod alsa-ev --prefix=$out/pci\n"
	benchUnescape(b, "\\"+strings.Repeat(line, 16<<10/len(line)))
}
