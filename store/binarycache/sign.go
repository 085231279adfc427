package binarycache

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nbuild/nbuild/store"
)

// ErrKey is wrapped by every key parse error.
var ErrKey = errors.New("binarycache: invalid key")

// ErrSignature is wrapped when a path has no signature by a trusted key.
var ErrSignature = errors.New("binarycache: no valid signature by a trusted key")

// SecretKey is a Nix binary-cache signing key (2.8 src/libstore/crypto.cc
// SecretKey): a name and a libsodium Ed25519 secret key (seed ‖ public key).
type SecretKey struct {
	Name string
	Key  ed25519.PrivateKey
}

// PublicKey is a Nix public key as trusted-public-keys lists them.
type PublicKey struct {
	Name string
	Key  ed25519.PublicKey
}

// splitKey parses "<name>:<base64 of size bytes>".
func splitKey(s, what string, size int) (string, []byte, error) {
	name, b64, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return "", nil, fmt.Errorf("%w: %s is not \"name:base64\"", ErrKey, what)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s %q: %v", ErrKey, what, name, err)
	}
	if len(raw) != size {
		return "", nil, fmt.Errorf("%w: %s %q is %d bytes, want %d", ErrKey, what, name, len(raw), size)
	}
	return name, raw, nil
}

// ParseSecretKey parses a secret key in the form nix-store
// --generate-binary-cache-key writes: "name:base64(64 bytes)". Surrounding
// whitespace (a trailing newline in a key file) is ignored.
func ParseSecretKey(s string) (*SecretKey, error) {
	name, raw, err := splitKey(strings.TrimSpace(s), "secret key", ed25519.PrivateKeySize)
	if err != nil {
		return nil, err
	}
	key := ed25519.PrivateKey(raw)
	// libsodium keeps the public key in the second half; a key file whose
	// halves disagree would sign with one key and advertise another.
	if !bytes.Equal(ed25519.NewKeyFromSeed(key.Seed()), key) {
		return nil, fmt.Errorf("%w: secret key %q: public half does not match the seed", ErrKey, name)
	}
	return &SecretKey{Name: name, Key: key}, nil
}

// LoadSecretKey reads a secret key file.
func LoadSecretKey(file string) (*SecretKey, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("binarycache: secret key: %w", err)
	}
	sk, err := ParseSecretKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return sk, nil
}

// ParsePublicKey parses "name:base64(32 bytes)".
func ParsePublicKey(s string) (PublicKey, error) {
	name, raw, err := splitKey(strings.TrimSpace(s), "public key", ed25519.PublicKeySize)
	if err != nil {
		return PublicKey{}, err
	}
	return PublicKey{Name: name, Key: ed25519.PublicKey(raw)}, nil
}

// ParsePublicKeys parses a whitespace-separated trusted-public-keys value.
func ParsePublicKeys(s string) ([]PublicKey, error) {
	var keys []PublicKey
	for _, f := range strings.Fields(s) {
		k, err := ParsePublicKey(f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// String returns the key in "name:base64" form.
func (k PublicKey) String() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// String returns the key in "name:base64" form, as a key file holds it.
func (k *SecretKey) String() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// PublicKey returns the public half of k.
func (k *SecretKey) PublicKey() PublicKey {
	return PublicKey{Name: k.Name, Key: k.Key.Public().(ed25519.PublicKey)}
}

// Sign returns the Sig value of info signed with k: "name:base64(sig)"
// over info's fingerprint (2.8 ValidPathInfo::sign).
func (k *SecretKey) Sign(info *store.PathInfo) (string, error) {
	fp, err := info.Fingerprint()
	if err != nil {
		return "", err
	}
	return k.Name + ":" + base64.StdEncoding.EncodeToString(ed25519.Sign(k.Key, []byte(fp))), nil
}

// Verify reports whether sig ("name:base64") is a valid signature of
// fingerprint by one of keys. A signature by an unknown key name is not
// valid; a malformed signature is an error (2.8 crypto.cc verifyDetached).
func Verify(fingerprint, sig string, keys []PublicKey) (bool, error) {
	name, b64, ok := strings.Cut(sig, ":")
	if !ok {
		return false, fmt.Errorf("binarycache: signature %q is not \"name:base64\"", sig)
	}
	var key *PublicKey
	for i := range keys {
		if keys[i].Name == name {
			key = &keys[i]
			break
		}
	}
	if key == nil {
		return false, nil
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return false, fmt.Errorf("binarycache: signature by %q is not valid", name)
	}
	return ed25519.Verify(key.Key, []byte(fingerprint), raw), nil
}

// CountValidSignatures returns how many of info.Sigs are valid signatures
// by keys (2.8 ValidPathInfo::checkSignatures, without its
// content-address shortcut; see CheckTrust).
func CountValidSignatures(info *store.PathInfo, keys []PublicKey) (int, error) {
	fp, err := info.Fingerprint()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range info.Sigs {
		ok, err := Verify(fp, s, keys)
		if err != nil {
			return 0, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// CheckTrust returns nil when info may be imported by a store trusting
// keys: it has a valid signature by one of them, or it is content-addressed
// and its content address recomputes to its path (2.8 store-api.cc
// ValidPathInfo::checkSignatures, isContentAddressed). Otherwise the error
// wraps ErrSignature.
func CheckTrust(info *store.PathInfo, keys []PublicKey) error {
	if info.CA != "" {
		if p, err := pathFromContentAddress(info); err == nil && p == info.Path {
			return nil
		}
	}
	n, err := CountValidSignatures(info, keys)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrSignature, info.Path, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %s", ErrSignature, info.Path)
	}
	return nil
}

// pathFromContentAddress recomputes the store path info's content address
// implies (2.8 store-api.cc makeFixedOutputPath, makeTextPath).
func pathFromContentAddress(info *store.PathInfo) (store.Path, error) {
	ca, err := ParseContentAddress(info.CA)
	if err != nil {
		return store.Path{}, err
	}
	kind, rest, _ := strings.Cut(ca, ":")
	recursive := false
	if r, ok := strings.CutPrefix(rest, "r:"); ok {
		recursive, rest = true, r
	}
	algo, digest, err := parseHash(rest)
	if err != nil {
		return store.Path{}, err
	}
	name := info.Path.Name()
	var refs []store.Path
	self := false
	for _, r := range info.References {
		if r == info.Path {
			self = true
		} else {
			refs = append(refs, r)
		}
	}
	var inner [32]byte
	switch {
	case kind == "text":
		if self {
			return store.Path{}, errors.New("text path refers to itself")
		}
		copy(inner[:], digest)
		return store.MakeTextPath(name, inner, refs)
	case recursive && algo == "sha256":
		copy(inner[:], digest)
		return store.MakeSourcePath(name, inner, refs, self)
	default:
		if len(refs) > 0 || self {
			return store.Path{}, errors.New("fixed-output path with references")
		}
		mode := ""
		if recursive {
			mode = "r:"
		}
		inner = sha256.Sum256([]byte("fixed:out:" + mode + algo + ":" + hex.EncodeToString(digest) + ":"))
		return store.MakePath("output:out", inner, name)
	}
}
