package drv

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// HashAlgo is a hash algorithm Nix accepts for content addresses
// (2.8 src/libutil/hash.cc parseHashType).
type HashAlgo uint8

const (
	MD5 HashAlgo = iota + 1
	SHA1
	SHA256
	SHA512
)

var algoNames = [...]string{MD5: "md5", SHA1: "sha1", SHA256: "sha256", SHA512: "sha512"}
var algoSizes = [...]int{MD5: 16, SHA1: 20, SHA256: 32, SHA512: 64}

func (a HashAlgo) String() string {
	if int(a) < len(algoNames) && algoNames[a] != "" {
		return algoNames[a]
	}
	return fmt.Sprintf("HashAlgo(%d)", a)
}

// Size is the digest size in bytes.
func (a HashAlgo) Size() int { return algoSizes[a] }

// ParseHashAlgo parses "md5", "sha1", "sha256" or "sha512".
func ParseHashAlgo(s string) (HashAlgo, error) {
	for a, n := range algoNames {
		if n != "" && n == s {
			return HashAlgo(a), nil
		}
	}
	return 0, fmt.Errorf("unknown hash algorithm %q", s)
}

// Method is how a content-addressed output's contents are hashed.
type Method uint8

const (
	// Flat hashes the file's bytes.
	Flat Method = iota + 1
	// Recursive hashes the NAR serialisation ("r:" prefix).
	Recursive
	// Text is the method of .drv files and builtins.toFile ("text:"
	// prefix). Nix 2.8 does not accept it in a derivation output; later
	// Nix versions do (with dynamic derivations), and so does nbuild.
	Text
)

func (m Method) prefix() string {
	switch m {
	case Recursive:
		return "r:"
	case Text:
		return "text:"
	}
	return ""
}

func (m Method) String() string {
	switch m {
	case Flat:
		return "flat"
	case Recursive:
		return "recursive"
	case Text:
		return "text"
	}
	return fmt.Sprintf("Method(%d)", m)
}

// parseMethodAlgo parses an output's hashAlgo field: "[r:|text:]ALGO".
func parseMethodAlgo(s string) (Method, HashAlgo, error) {
	m := Flat
	if rest, ok := strings.CutPrefix(s, "r:"); ok {
		m, s = Recursive, rest
	} else if rest, ok := strings.CutPrefix(s, "text:"); ok {
		m, s = Text, rest
	}
	a, err := ParseHashAlgo(s)
	return m, a, err
}

var errHashLen = errors.New("hash has the wrong length for its algorithm")

// decodeHash decodes the hash field of a fixed output: base16 (either
// case), Nix base32 or base64, told apart by length as
// 2.8 Hash::parseNonSRIUnprefixed does.
func decodeHash(s string, a HashAlgo) ([]byte, error) {
	n := a.Size()
	switch len(s) {
	case 2 * n:
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("invalid base16 hash: %v", err)
		}
		return b, nil
	case (n*8-1)/5 + 1:
		for i := 0; i < len(s); i++ {
			if !nix32[s[i]] {
				return nil, fmt.Errorf("invalid character %q in base32 hash", s[i])
			}
		}
		b, err := nixbase32.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("invalid base32 hash: %v", err)
		}
		return b, nil
	case base64.StdEncoding.EncodedLen(n):
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != n {
			return nil, fmt.Errorf("invalid base64 hash")
		}
		return b, nil
	}
	return nil, errHashLen
}

// FixedHash is the content address of a fixed output.
type FixedHash struct {
	Method Method
	Algo   HashAlgo
	Digest []byte
}

// MethodAlgo is the hashAlgo field as Nix prints it ("r:sha256").
func (h FixedHash) MethodAlgo() string { return h.Method.prefix() + h.Algo.String() }

// Hex is the digest in lowercase base16, the form .drv files hold.
func (h FixedHash) Hex() string { return hex.EncodeToString(h.Digest) }

// FixedHash decodes a fixed output's hashAlgo and hash fields.
func (o *Output) FixedHash() (FixedHash, error) {
	m, a, err := parseMethodAlgo(o.HashAlgo)
	if err != nil {
		return FixedHash{}, err
	}
	if o.Hash == "" || o.Hash == "impure" {
		return FixedHash{}, fmt.Errorf("output %q is not fixed", o.Name)
	}
	d, err := decodeHash(o.Hash, a)
	if err != nil {
		return FixedHash{}, err
	}
	return FixedHash{Method: m, Algo: a, Digest: d}, nil
}
