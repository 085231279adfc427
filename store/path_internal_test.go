package store

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// TestDecodeHashPart checks the table decoder against go-nix's on random
// hash parts, on every character, and on bits beyond the digest.
func TestDecodeHashPart(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for range 20000 {
		digest := randomDigest(rng)
		s := nixbase32.EncodeToString(digest[:])
		var got [DigestSize]byte
		got[3] = 0xaa // decodeHashPart must not OR into stale bytes
		if err := decodeHashPart(got[:], s); err != nil || got != digest {
			t.Fatalf("%s: got %x, %v; want %x", s, got, err, digest)
		}
	}
	valid := "0123456789abcdfghijklmnpqrsvwxyz"
	for c := 0; c < 256; c++ {
		s := "1b8m03r63zqhnjf7l5wnldhh7c134ap5" // a real hash part
		s = s[:5] + string(rune(c)) + s[6:]
		if c >= 0x80 {
			s = s[:5] + string([]byte{byte(c)}) + s[6:]
		}
		var d [DigestSize]byte
		err := decodeHashPart(d[:], s)
		_, want := nixbase32.DecodeString(s)
		isValid := false
		for i := 0; i < len(valid); i++ {
			isValid = isValid || valid[i] == byte(c)
		}
		if (err == nil) != isValid || (want == nil) != isValid {
			t.Errorf("character %q: err %v, go-nix %v, in alphabet %v", c, err, want, isValid)
		}
	}
	// The first character carries bits 155-159, the digest's last: every
	// value fits, in both decoders.
	for _, s := range []string{"z0000000000000000000000000000000", "20000000000000000000000000000000"} {
		var d [DigestSize]byte
		_, want := nixbase32.DecodeString(s)
		if err := decodeHashPart(d[:], s); (err == nil) != (want == nil) {
			t.Errorf("%s: err %v, go-nix %v", s, err, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		var d [DigestSize]byte
		decodeHashPart(d[:], "1b8m03r63zqhnjf7l5wnldhh7c134ap5")
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// TestCheckNameEveryByte checks the table against Nix's rule (2.8
// src/libstore/path.cc checkName) for every byte, at the start, middle and
// end of a name, with the message naming the first bad byte.
// TestAppendDigest checks the unrolled encoder of 20-byte digests against
// go-nix's.
func TestAppendDigest(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	for range 20000 {
		digest := randomDigest(rng)
		if got, want := string(AppendNix32([]byte("x"), digest[:])), "x"+nixbase32.EncodeToString(digest[:]); got != want {
			t.Fatalf("%x: got %s, want %s", digest, got, want)
		}
	}
}

func TestCheckNameEveryByte(t *testing.T) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		allowed := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
			b == '+' || b == '-' || b == '.' || b == '_' || b == '?' || b == '='
		for _, name := range []string{string([]byte{b}) + "ab", "a" + string([]byte{b}) + "b", "hello-2.12" + string([]byte{b})} {
			got := checkName(name)
			if allowed && got != "" {
				t.Errorf("checkName(%q) = %q, want accepted", name, got)
			}
			if want := fmt.Sprintf("invalid character %q in name", b); !allowed && got != want {
				t.Errorf("checkName(%q) = %q, want %q", name, got, want)
			}
		}
	}
	if got := checkName("ok-name" + " " + "/"); got != `invalid character ' ' in name` {
		t.Errorf("two bad bytes: %q names the wrong one", got)
	}
}

func randomDigest(rng *rand.Rand) (d [DigestSize]byte) {
	for i := range d {
		d[i] = byte(rng.Uint32())
	}
	return d
}
