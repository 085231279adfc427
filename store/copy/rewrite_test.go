package copy

import (
	"bytes"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
)

// rewriteNaive is the definition rewriter implements: from the start,
// every window of 32 alphabet bytes that is a key is replaced and skipped.
func rewriteNaive(b []byte, m map[string]string) []byte {
	out := bytes.Clone(b)
	for i := 0; i+hashLen <= len(out); {
		w := out[i : i+hashLen]
		all := true
		for _, c := range w {
			all = all && isNix32[c]
		}
		if v, hit := m[string(w)]; all && hit {
			copy(w, v)
			i += hashLen
			continue
		}
		i++
	}
	return out
}

func rewriteChunks(t testing.TB, b []byte, m map[string]string, cuts []int) []byte {
	var out bytes.Buffer
	r := newRewriter(&out, m)
	prev := 0
	for _, c := range append(cuts, len(b)) {
		c = min(max(c, prev), len(b))
		if n, err := r.Write(b[prev:c]); err != nil || n != c-prev {
			t.Fatalf("Write = %d, %v", n, err)
		}
		prev = c
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

const (
	oldA = "0c8yiw7yrnpg5lq4bvzqvikxws5y4c4p"
	newA = "a6b1ij4a0yxzdxl07z8w4wl1s3lq0ixs"
	oldB = "ccccccccccccccccccccccccccccccc1"
	newB = "ddddddddddddddddddddddddddddddd1"
)

func TestRewriter(t *testing.T) {
	m := map[string]string{oldA: newA, oldB: newB}
	for _, in := range []string{
		"",
		"short",
		"/nix/store/" + oldA + "-foo/bin:/nix/store/" + oldB + "-bar",
		oldA + oldB,                     // adjacent
		"x" + oldA + "y",                // embedded in other bytes
		"c" + oldB,                      // a longer alphabet run ending in a key
		oldA[:31] + "e" + oldA,          // a near miss: e is not in the alphabet
		oldB[:20] + oldB,                // run longer than a hash, key at its end
		"\x00\xff" + oldA + "\n" + oldA, // twice
	} {
		want := rewriteNaive([]byte(in), m)
		for _, cuts := range [][]int{nil, {1}, {16, 33}, {31, 32, 33, 40}} {
			if got := rewriteChunks(t, []byte(in), m, cuts); !bytes.Equal(got, want) {
				t.Errorf("rewrite(%q) cut at %v = %q, want %q", in, cuts, got, want)
			}
		}
	}
	if got := rewriteNaive([]byte("/nix/store/"+oldA), m); string(got) != "/nix/store/"+newA {
		t.Errorf("naive rewrite = %q", got)
	}
}

// TestRewriterRandom checks the streaming rewriter against the definition
// on inputs built from keys, values, alphabet runs and random bytes, cut
// into random chunks.
func TestRewriterRandom(t *testing.T) {
	m := map[string]string{oldA: newA, oldB: newB, newA: oldA}
	rng := rand.New(rand.NewPCG(1, 2))
	parts := []string{oldA, oldB, newA, "abc", "0123456789abcdfghijklmnpqrsvwxyz", "\x00", "/nix/store/", "e"}
	for range 2000 {
		var b []byte
		for range rng.IntN(12) {
			b = append(b, parts[rng.IntN(len(parts))]...)
		}
		var cuts []int
		for range rng.IntN(4) {
			cuts = append(cuts, rng.IntN(len(b)+1))
		}
		slices.Sort(cuts)
		want := rewriteNaive(b, m)
		if got := rewriteChunks(t, b, m, cuts); !bytes.Equal(got, want) {
			t.Fatalf("rewrite(%q) cut at %v = %q, want %q", b, cuts, got, want)
		}
	}
}

func FuzzRewriter(f *testing.F) {
	f.Add([]byte("/nix/store/"+oldA+"-x"), 3)
	f.Add([]byte(oldB+oldA), 32)
	f.Add([]byte{0xff, 0}, 0)
	m := map[string]string{oldA: newA, oldB: newB, newA: oldA}
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		if cut < 0 {
			cut = -cut
		}
		want := rewriteNaive(b, m)
		if got := rewriteChunks(t, b, m, []int{cut % (len(b) + 1)}); !bytes.Equal(got, want) {
			t.Fatalf("rewrite(%q) = %q, want %q", b, got, want)
		}
	})
}

func BenchmarkRewriter(b *testing.B) {
	data := make([]byte, 4<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	copy(data[1000:], "/nix/store/"+oldA)
	m := map[string]string{oldA: newA}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	r := newRewriter(io.Discard, m)
	for b.Loop() {
		r.Write(data)
		r.Close()
	}
}
