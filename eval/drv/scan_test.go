package drv

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/nbuild/nbuild/store"
)

// TestStringScanners: strings dense in the bytes the word-at-a-time
// scanners look at (quotes, backslashes, control bytes, and the bytes their
// masks may flag by mistake next to them), of every length and alignment,
// parse to the same value with Parse, ParseShared and an interner; and
// raw text with faults in it gives all three the same error.
func TestStringScanners(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("\"\\\n\r\t\x00\x01\x0d\x0e\x0f#]^ !abnrtz\x7f\x80\xff")
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			if rng.IntN(3) == 0 {
				b[i] = byte('a' + rng.IntN(26))
			} else {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			}
		}
		return b
	}
	intern := &Parser{Intern: func(b []byte) string { return string(b) }}
	var shared Parser
	for i := range 20000 {
		n := rng.IntN(80)
		if i%100 == 0 {
			n = rng.IntN(3000)
		}
		s := string(randBytes(n))
		pad := string(bytes.Repeat([]byte("p"), rng.IntN(9)))
		d := &Derivation{
			Outputs:  []Output{{Name: "out", Path: store.MustParsePath(outPath)}},
			Platform: "x86_64-linux",
			Builder:  pad + s,
			Args:     []string{s, pad},
			Env:      []EnvVar{{Key: s, Value: s + pad}},
		}
		if n%2 == 0 {
			d.Env = append(d.Env, EnvVar{Key: s + "~", Value: ""})
		}
		data := d.AppendATerm(nil)
		for name, parse := range map[string]func([]byte) (*Derivation, error){
			"Parse": Parse, "ParseShared": shared.ParseShared, "Intern": intern.Parse,
		} {
			got, err := parse(bytes.Clone(data))
			if err != nil || !reflect.DeepEqual(got, d) {
				t.Fatalf("%s of %q: %v\n got %+v\nwant %+v", name, data, err, got, d)
			}
		}

		// The same text unescaped, or with one byte changed: whatever
		// Parse says, the others say too.
		raw := bytes.Clone(data)
		if rng.IntN(2) == 0 {
			k := bytes.Index(raw, []byte(`",[`)) + 3 // into args
			raw = append(raw[:k:k], append(randBytes(rng.IntN(40)), raw[k:]...)...)
		} else {
			raw[rng.IntN(len(raw))] = alphabet[rng.IntN(len(alphabet))]
		}
		want, werr := Parse(raw)
		for name, parse := range map[string]func([]byte) (*Derivation, error){
			"ParseShared": shared.ParseShared, "Intern": intern.Parse,
		} {
			got, err := parse(bytes.Clone(raw))
			if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() || !reflect.DeepEqual(got, want) {
				t.Fatalf("%s of %q: %v, Parse: %v", name, raw, err, werr)
			}
		}
		shared.Recycle()
	}
}

// TestAfter: the word-at-a-time order check agrees with Go's string order,
// on strings that share prefixes of every length.
func TestAfter(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	base := "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-name"
	mutate := func() string {
		s := []byte(base[:rng.IntN(len(base)+1)])
		if len(s) > 0 && rng.IntN(2) == 0 {
			s[rng.IntN(len(s))] = byte(rng.IntN(256))
		}
		return string(s)
	}
	for range 100000 {
		a, b := mutate(), mutate()
		if got := after(a, b); got != (b > a) {
			t.Fatalf("after(%q, %q) = %v", a, b, got)
		}
	}
}

// TestWordCheckers: the eight-at-a-time hex and base32 checks agree with
// the byte-wise definitions for every byte value at every position.
func TestWordCheckers(t *testing.T) {
	hexStr := "0123456789abcdefABCDEF0123456789abcdef0123456789abcdef0123456789"
	path := "/nix/store/6fpsx5wb2pxm5zxl9671lmqzry2llqaq-ia-simple"
	for c := 0; c < 256; c++ {
		for i := range hexStr {
			s := hexStr[:i] + string([]byte{byte(c)}) + hexStr[i+1:]
			_, err := hex.DecodeString(s)
			if got := isHex(s); got != (err == nil) {
				t.Fatalf("isHex(%q) = %v, hex.DecodeString error %v", s, got, err)
			}
		}
		for i := range path {
			s := path[:i] + string([]byte{byte(c)}) + path[i+1:]
			if got, want := checkStorePath(s), checkStorePathSlow(s); got != want {
				t.Fatalf("checkStorePath(%q) = %q, want %q", s, got, want)
			}
		}
	}
}
