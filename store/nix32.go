package store

import (
	"encoding/binary"
	"fmt"
	"slices"
)

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
	if len(src) == DigestSize {
		return appendDigest(dst, (*[DigestSize]byte)(src))
	}
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

// appendDigest is AppendNix32 for a store path's 20 bytes, written out as
// decodeDigest is: each 5 bytes are 40 bits, the 8 characters of one group
// counted from the end, stored at constant offsets straight into dst.
// Every path written (ATerm, JSON, hashes, the wire) goes through here.
func appendDigest(dst []byte, d *[DigestSize]byte) []byte {
	n := len(dst)
	dst = slices.Grow(dst, HashPartLen)[:n+HashPartLen]
	s := (*[HashPartLen]byte)(dst[n:])
	const a = Nix32Alphabet
	v := uint64(binary.LittleEndian.Uint32(d[0:4])) | uint64(d[4])<<32
	s[31], s[30], s[29], s[28] = a[v&31], a[v>>5&31], a[v>>10&31], a[v>>15&31]
	s[27], s[26], s[25], s[24] = a[v>>20&31], a[v>>25&31], a[v>>30&31], a[v>>35&31]
	v = uint64(binary.LittleEndian.Uint32(d[5:9])) | uint64(d[9])<<32
	s[23], s[22], s[21], s[20] = a[v&31], a[v>>5&31], a[v>>10&31], a[v>>15&31]
	s[19], s[18], s[17], s[16] = a[v>>20&31], a[v>>25&31], a[v>>30&31], a[v>>35&31]
	v = uint64(binary.LittleEndian.Uint32(d[10:14])) | uint64(d[14])<<32
	s[15], s[14], s[13], s[12] = a[v&31], a[v>>5&31], a[v>>10&31], a[v>>15&31]
	s[11], s[10], s[9], s[8] = a[v>>20&31], a[v>>25&31], a[v>>30&31], a[v>>35&31]
	v = uint64(binary.LittleEndian.Uint32(d[15:19])) | uint64(d[19])<<32
	s[7], s[6], s[5], s[4] = a[v&31], a[v>>5&31], a[v>>10&31], a[v>>15&31]
	s[3], s[2], s[1], s[0] = a[v>>20&31], a[v>>25&31], a[v>>30&31], a[v>>35&31]
	return dst
}
