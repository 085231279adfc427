package binarycache

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParseKeysErrors(t *testing.T) {
	seed := make([]byte, ed25519.SeedSize)
	good := ed25519.NewKeyFromSeed(seed)
	mismatched := append(append([]byte(nil), good[:32]...), make([]byte, 32)...)
	mismatched[40] = 1
	tests := []struct {
		name, secret string
	}{
		{"no colon", base64.StdEncoding.EncodeToString(good)},
		{"empty name", ":" + base64.StdEncoding.EncodeToString(good)},
		{"bad base64", "k:!!!"},
		{"public key given as secret", "k:" + base64.StdEncoding.EncodeToString(good[32:])},
		{"halves disagree", "k:" + base64.StdEncoding.EncodeToString(mismatched)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseSecretKey(tt.secret); !errors.Is(err, ErrKey) {
				t.Fatalf("err = %v, want ErrKey", err)
			}
		})
	}
	if _, err := ParsePublicKey("k:" + base64.StdEncoding.EncodeToString(good)); !errors.Is(err, ErrKey) {
		t.Errorf("64-byte public key: %v", err)
	}
	sk, err := ParseSecretKey("k:" + base64.StdEncoding.EncodeToString(good) + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := sk.String(); got != "k:"+base64.StdEncoding.EncodeToString(good) {
		t.Errorf("String = %q", got)
	}
	if _, err := LoadSecretKey("testdata/does-not-exist"); err == nil {
		t.Error("missing key file accepted")
	}
	keys, err := ParsePublicKeys(" a:" + base64.StdEncoding.EncodeToString(good[32:]) + "\n b:" + base64.StdEncoding.EncodeToString(good[32:]))
	if err != nil || len(keys) != 2 || keys[1].Name != "b" {
		t.Errorf("ParsePublicKeys = %v, %v", keys, err)
	}
}

func TestCheckTrust(t *testing.T) {
	_, pk := testKeys(t)
	other, err := ParseSecretKey("test-key-1:" + base64.StdEncoding.EncodeToString(ed25519.NewKeyFromSeed(make([]byte, 32))))
	if err != nil {
		t.Fatal(err)
	}
	load := func(name string) *NarInfo {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		ni, err := ParseNarInfo(data)
		if err != nil {
			t.Fatal(err)
		}
		return ni
	}
	built := load("built-xz.narinfo")
	tests := []struct {
		name   string
		ni     *NarInfo
		edit   func(*NarInfo)
		keys   []PublicKey
		wantOK bool
	}{
		{"signed, key trusted", built, nil, []PublicKey{pk}, true},
		{"signed, no keys", built, nil, nil, false},
		{"same key name, other key", built, nil, []PublicKey{other.PublicKey()}, false},
		{"NarSize tampered", built, func(n *NarInfo) { n.NarSize++ }, []PublicKey{pk}, false},
		{"reference dropped", built, func(n *NarInfo) { n.References = nil }, []PublicKey{pk}, false},
		{"signature of another key name", built, func(n *NarInfo) { n.Sigs = []string{"nobody:" + strings.Repeat("A", 86) + "=="} }, []PublicKey{pk}, false},
		{"fixed:r:sha256 CA path, no keys", load("fixed-zstd.narinfo"), func(n *NarInfo) { n.Sigs = nil }, nil, true},
		{"text CA .drv with references, no keys", load("drv-none.narinfo"), func(n *NarInfo) { n.Sigs = nil }, nil, true},
		{"CA that does not match the path", load("fixed-zstd.narinfo"), func(n *NarInfo) {
			n.Sigs = nil
			n.CA = "fixed:r:sha256:14nyjifl0gm1vx0167b431vl6ywsmvdfhx2vvzlygsw1ld07mk4m"
		}, nil, false},
		{"CA flat sha256 does not match", load("fixed-zstd.narinfo"), func(n *NarInfo) {
			n.Sigs = nil
			n.CA = "fixed:sha256:14nyjifl0gm1vx0167b431vl6ywsmvdfhx2vvzlygsw1ld07mk4m"
		}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ni := *tt.ni
			if tt.edit != nil {
				tt.edit(&ni)
			}
			err := CheckTrust(ni.PathInfo(), tt.keys)
			if tt.wantOK && err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if !tt.wantOK && !errors.Is(err, ErrSignature) {
				t.Fatalf("err = %v, want ErrSignature", err)
			}
		})
	}

	bad := *built
	bad.Sigs = []string{"test-key-1:c2hvcnQ="}
	if _, err := CountValidSignatures(bad.PathInfo(), []PublicKey{pk}); err == nil {
		t.Error("a 5-byte signature is not an error")
	}
}
