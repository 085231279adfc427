package store_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/nbuild/nbuild/store"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// TestNix32 compares the encoder with go-nix's (which agrees with Nix) for
// every length up to 64 bytes, and checks the round trip.
func TestNix32(t *testing.T) {
	src := make([]byte, 64)
	for i := range src {
		src[i] = byte(i*151 + 7)
	}
	for n := 0; n <= len(src); n++ {
		got := store.EncodeNix32(src[:n])
		if want := nixbase32.EncodeToString(src[:n]); got != want {
			t.Fatalf("%d bytes: %q, go-nix %q", n, got, want)
		}
		if len(got) != store.Nix32Len(n) {
			t.Fatalf("%d bytes: length %d, Nix32Len %d", n, len(got), store.Nix32Len(n))
		}
		back, err := store.DecodeNix32(got)
		if err != nil || !bytes.Equal(back, src[:n]) {
			t.Fatalf("%d bytes: round trip %x, %v", n, back, err)
		}
	}
	// A sha256 as Nix prints it.
	if got := store.EncodeNix32(make([]byte, 32)); got != "0000000000000000000000000000000000000000000000000000" {
		t.Errorf("zero sha256: %q", got)
	}
	for _, bad := range []string{"e", "0000000000000000000000000000000e", "zzz", "1", "zz"} {
		if b, err := store.DecodeNix32(bad); err == nil {
			t.Errorf("%q decoded to %x", bad, b)
		}
	}
}

func FuzzNix32(f *testing.F) {
	f.Add([]byte{}, "")
	f.Add([]byte("hello"), "0v0ki6sycsn")
	f.Add([]byte{0xff, 0xff}, "zzzz")
	f.Add([]byte{1}, "!!")
	f.Fuzz(func(t *testing.T, src []byte, s string) {
		enc := store.EncodeNix32(src)
		if back, err := store.DecodeNix32(enc); err != nil || !bytes.Equal(back, src) {
			t.Fatalf("round trip of %x: %x %v", src, back, err)
		}
		got, err := store.DecodeNix32(s)
		want, werr := nixbase32.DecodeString(s)
		if (err == nil) != (werr == nil) || err == nil && !bytes.Equal(got, want) {
			t.Fatalf("%q: %x %v; go-nix %x %v", s, got, err, want, werr)
		}
	})
}

func ExampleEncodeNix32() {
	digest := []byte{0x01, 0x02, 0x03}
	fmt.Println(store.EncodeNix32(digest))
	// Output: 060h1
}
