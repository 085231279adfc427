package store

import "fmt"

// Nix32Alphabet is the alphabet of Nix's base32 ("nix32"): digits and
// lower-case letters without e, o, t and u.
const Nix32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// Nix32Len is the length of the nix32 encoding of n bytes.
func Nix32Len(n int) int {
	if n == 0 {
		return 0
	}
	return (n*8-1)/5 + 1
}

// AppendNix32 appends the nix32 encoding of src to dst, as Nix prints
// hashes and store path digests [2.8 src/libutil/hash.cc printHash32]:
// unlike RFC 4648 base32, the first character holds the highest bits of
// the last byte, and the last character the lowest five bits of the first.
func AppendNix32(dst, src []byte) []byte {
	n := Nix32Len(len(src))
	for k := n - 1; k >= 0; k-- {
		b := k * 5
		i, j := b/8, uint(b%8)
		c := src[i] >> j
		if i+1 < len(src) {
			c |= src[i+1] << (8 - j)
		}
		dst = append(dst, Nix32Alphabet[c&0x1f])
	}
	return dst
}

// EncodeNix32 returns the nix32 encoding of src.
func EncodeNix32(src []byte) string {
	return string(AppendNix32(make([]byte, 0, Nix32Len(len(src))), src))
}

// DecodeNix32 decodes a nix32 string into the bytes it encodes: a string
// of length Nix32Len(n) decodes to n bytes. Characters outside the
// alphabet, and bits beyond the last byte, are errors.
func DecodeNix32(s string) ([]byte, error) {
	n := len(s) * 5 / 8
	if Nix32Len(n) != len(s) {
		return nil, fmt.Errorf("store: nix32 string of %d characters encodes no whole number of bytes", len(s))
	}
	dst := make([]byte, n)
	if err := decodeHashPart(dst, s); err != nil {
		return nil, fmt.Errorf("store: nix32 %q: %w", s, err)
	}
	return dst, nil
}
