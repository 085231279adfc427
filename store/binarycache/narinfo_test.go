package binarycache

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store"
)

// nixNarInfos returns the narinfo fixtures real Nix 2.8 wrote.
func nixNarInfos(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("testdata/*.narinfo")
	if err != nil || len(files) == 0 {
		t.Fatalf("no narinfo fixtures: %v", err)
	}
	m := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m[filepath.Base(f)] = data
	}
	return m
}

func testKeys(t testing.TB) (*SecretKey, PublicKey) {
	t.Helper()
	sk, err := LoadSecretKey("testdata/test-key-1.sec")
	if err != nil {
		t.Fatal(err)
	}
	pubText, err := os.ReadFile("testdata/test-key-1.pub")
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ParsePublicKey(string(pubText))
	if err != nil {
		t.Fatal(err)
	}
	if pk.String() != sk.PublicKey().String() {
		t.Fatalf("public key %s does not match the secret key's %s", pk, sk.PublicKey())
	}
	return sk, pk
}

// TestNixNarInfos: every narinfo Nix wrote parses, formats back to the
// same bytes, carries a signature that verifies, and re-signing it with
// the same key gives Nix's signature (Ed25519 is deterministic).
func TestNixNarInfos(t *testing.T) {
	sk, pk := testKeys(t)
	for name, data := range nixNarInfos(t) {
		t.Run(name, func(t *testing.T) {
			ni, err := ParseNarInfo(data)
			if err != nil {
				t.Fatal(err)
			}
			if got := ni.AppendText(nil); !bytes.Equal(got, data) {
				t.Fatalf("formatted narinfo differs:\n got %q\nwant %q", got, data)
			}
			info := ni.PathInfo()
			if n, err := CountValidSignatures(info, []PublicKey{pk}); err != nil || n != 1 {
				t.Fatalf("CountValidSignatures = %d, %v; want 1", n, err)
			}
			sig, err := sk.Sign(info)
			if err != nil {
				t.Fatal(err)
			}
			if len(ni.Sigs) != 1 || ni.Sigs[0] != sig {
				t.Fatalf("Sign = %q, Nix wrote %q", sig, ni.Sigs)
			}
		})
	}
}

const goodNarInfo = `StorePath: /nix/store/5ypb78yjkq9rgczz48kaap4kyldhvp1p-bc-top
URL: nar/0lgbc4243vcsh5dlp927bz2ldgds9gh40pvi1szs1ca08b1crsyq.nar.xz
Compression: xz
FileHash: sha256:0lgbc4243vcsh5dlp927bz2ldgds9gh40pvi1szs1ca08b1crsyq
FileSize: 268
NarHash: sha256:14nyjifl0gm1vx0167b431vl6ywsmvdfhx2vvzlygsw1ld07mk4m
NarSize: 800
References: 4id99c1j0r8l6wy1qypckm9a9piw8mhp-bc-dep
Deriver: wy4js9w4zycb6z08ghnzvipxifwvbza5-bc-top.drv
`

// edit returns goodNarInfo with the line starting with key replaced by
// line ("" deletes it), or line appended when no line has key.
func edit(key, line string) string {
	var out []string
	found := false
	for _, l := range strings.SplitAfter(goodNarInfo, "\n") {
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, key+":") && !found {
			found = true
			if line != "" {
				out = append(out, line+"\n")
			}
			continue
		}
		out = append(out, l)
	}
	if !found {
		out = append(out, line+"\n")
	}
	return strings.Join(out, "")
}

func TestParseNarInfoErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"empty", "", "no StorePath"},
		{"no StorePath", edit("StorePath", ""), "no StorePath"},
		{"no NarHash", edit("NarHash", ""), "no NarHash"},
		{"no URL", edit("URL", ""), "no URL"},
		{"empty URL", edit("URL", "URL: "), "no URL"},
		{"no NarSize", edit("NarSize", ""), "NarSize"},
		{"NarSize 0", edit("NarSize", "NarSize: 0"), "NarSize"},
		{"missing final newline", strings.TrimSuffix(goodNarInfo, "\n"), "missing newline"},
		{"no space after colon", edit("URL", "URL:nar/x.nar"), "not a \"Key: value\" line"},
		{"key without value or space", edit("References", "References:"), "not a \"Key: value\" line"},
		{"blank line", goodNarInfo + "\n", "not a \"Key: value\" line"},
		{"store path outside the store", edit("StorePath", "StorePath: /gnu/store/5ypb78yjkq9rgczz48kaap4kyldhvp1p-bc-top"), "StorePath"},
		{"bad reference", edit("References", "References: not-a-path"), "References"},
		{"full path reference", edit("References", "References: /nix/store/4id99c1j0r8l6wy1qypckm9a9piw8mhp-bc-dep"), "References"},
		{"second non-empty References", goodNarInfo + "References: 4id99c1j0r8l6wy1qypckm9a9piw8mhp-bc-dep\n", "References: repeated"},
		{"second CA", goodNarInfo + "CA: text:sha256:12dmx7nv39b3k5452m69zc8x24d11xbfsfjiz9a3x1y96l6g8bw3\nCA: text:sha256:12dmx7nv39b3k5452m69zc8x24d11xbfsfjiz9a3x1y96l6g8bw3\n", "CA: repeated"},
		{"second StorePath", goodNarInfo + "StorePath: /nix/store/5ypb78yjkq9rgczz48kaap4kyldhvp1p-bc-top\n", "StorePath: repeated"},
		{"bad CA kind", goodNarInfo + "CA: fixd:sha256:12dmx7nv39b3k5452m69zc8x24d11xbfsfjiz9a3x1y96l6g8bw3\n", "unknown kind"},
		{"text CA with sha1", goodNarInfo + "CA: text:sha1:0000000000000000000000000000000000000000\n", "must be sha256"},
		{"NarHash without algorithm", edit("NarHash", "NarHash: 14nyjifl0gm1vx0167b431vl6ywsmvdfhx2vvzlygsw1ld07mk4m"), "no algorithm prefix"},
		{"NarHash md5", edit("NarHash", "NarHash: md5:00000000000000000000000000000000"), "want sha256"},
		{"NarHash too short", edit("NarHash", "NarHash: sha256:14nyjifl0gm1vx"), "wrong length"},
		{"NarHash bad nix32 letter", edit("NarHash", "NarHash: sha256:e4nyjifl0gm1vx0167b431vl6ywsmvdfhx2vvzlygsw1ld07mk4m"), "NarHash"},
		{"NarHash non-canonical nix32", edit("NarHash", "NarHash: sha256:z4nyjifl0gm1vx0167b431vl6ywsmvdfhx2vvzlygsw1ld07mk4m"), "NarHash"},
		{"FileHash unknown algorithm", edit("FileHash", "FileHash: sha3:0lgbc4243vcsh5dlp927bz2ldgds9gh40pvi1szs1ca08b1crsyq"), "unknown algorithm"},
		{"NarSize with sign", edit("NarSize", "NarSize: +800"), "not a decimal size"},
		{"NarSize negative", edit("NarSize", "NarSize: -800"), "not a decimal size"},
		{"NarSize overflow", edit("NarSize", "NarSize: 18446744073709551616"), "not a decimal size"},
		{"FileSize with space", edit("FileSize", "FileSize:  268"), "not a decimal size"},
		{"bad deriver", edit("Deriver", "Deriver: /nix/store/wy4js9w4zycb6z08ghnzvipxifwvbza5-bc-top.drv"), "Deriver"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ni, err := ParseNarInfo([]byte(tt.text))
			if err == nil {
				t.Fatalf("accepted: %+v", ni)
			}
			if !errors.Is(err, ErrCorruptNarInfo) {
				t.Errorf("error %v does not wrap ErrCorruptNarInfo", err)
			}
			var ne *NarInfoError
			if !errors.As(err, &ne) {
				t.Errorf("error %T is not a *NarInfoError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// TestParseNarInfoAccepts covers what 2.8 accepts that its writer never
// produces; each must parse to the same info as goodNarInfo (or the noted
// difference).
func TestParseNarInfoAccepts(t *testing.T) {
	base, err := ParseNarInfo([]byte(goodNarInfo))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		text  string
		check func(*NarInfo) bool
	}{
		{"unknown key", goodNarInfo + "Foo: bar\n", nil},
		{"base16 NarHash", edit("NarHash", "NarHash: sha256:95cc7a40a381ebe7e9df5b74e8daae9a7b437718641d1340dfa13e405d94de92"), nil},
		{"base64 NarHash", edit("NarHash", "NarHash: sha256:lcx6QKOB6+fp31t06NqumntDdxhkHRNA36E+QF2U3pI="), nil},
		{"SRI NarHash", edit("NarHash", "NarHash: sha256-lcx6QKOB6+fp31t06NqumntDdxhkHRNA36E+QF2U3pI="), nil},
		{"references split by several spaces", edit("References", "References:  4id99c1j0r8l6wy1qypckm9a9piw8mhp-bc-dep  "), nil},
		{"empty References then one", edit("References", "References: ") + "References: 4id99c1j0r8l6wy1qypckm9a9piw8mhp-bc-dep\n", nil},
		{"no Compression means bzip2", edit("Compression", ""), func(n *NarInfo) bool { return n.Compression == "bzip2" }},
		{"unknown-deriver", edit("Deriver", "Deriver: unknown-deriver"), func(n *NarInfo) bool { return n.Deriver.IsZero() }},
		{"no FileHash (newer Nix)", edit("FileHash", ""), func(n *NarInfo) bool { return !n.HasFileHash }},
		{"CA normalised to nix32", goodNarInfo + "CA: fixed:r:sha256-lcx6QKOB6+fp31t06NqumntDdxhkHRNA36E+QF2U3pI=\n",
			func(n *NarInfo) bool {
				return n.CA == "fixed:r:sha256:14nyjifl0gm1vx0167b431vl6ywsmvdfhx2vvzlygsw1ld07mk4m"
			}},
		{"signatures sorted and unique", goodNarInfo + "Sig: b:x\nSig: a:y\nSig: b:x\n",
			func(n *NarInfo) bool { return reflect.DeepEqual(n.Sigs, []string{"a:y", "b:x"}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ni, err := ParseNarInfo([]byte(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				if !tt.check(ni) {
					t.Fatalf("unexpected result %+v", ni)
				}
				return
			}
			if !reflect.DeepEqual(ni, base) {
				t.Fatalf("got %+v\nwant %+v", ni, base)
			}
		})
	}
}

func TestAppendTextSortsAndKeepsTrailingSpace(t *testing.T) {
	a := store.MustParsePath("/nix/store/4id99c1j0r8l6wy1qypckm9a9piw8mhp-bc-dep")
	b := store.MustParsePath("/nix/store/0id99c1j0r8l6wy1qypckm9a9piw8mhp-zz")
	ni := &NarInfo{StorePath: a, URL: "nar/x.nar", Compression: "none", NarSize: 1, References: []store.Path{a, b, a}, Sigs: []string{"z:1", "a:2"}}
	want := "StorePath: /nix/store/4id99c1j0r8l6wy1qypckm9a9piw8mhp-bc-dep\nURL: nar/x.nar\nCompression: none\n" +
		"NarHash: sha256:0000000000000000000000000000000000000000000000000000\nNarSize: 1\n" +
		"References: 0id99c1j0r8l6wy1qypckm9a9piw8mhp-zz 4id99c1j0r8l6wy1qypckm9a9piw8mhp-bc-dep\nSig: a:2\nSig: z:1\n"
	if got := string(ni.AppendText(nil)); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	ni.References, ni.Sigs = nil, nil
	if got := string(ni.AppendText(nil)); !strings.Contains(got, "\nReferences: \n") {
		t.Fatalf("no trailing space on empty References:\n%q", got)
	}
}

func FuzzParseNarInfo(f *testing.F) {
	for _, data := range nixNarInfos(f) {
		f.Add(data)
	}
	f.Add([]byte(goodNarInfo))
	f.Add([]byte(goodNarInfo + "CA: fixed:r:sha256-lcx6QKOB6+fp31t06NqumntDdxhkHRNA36E+QF2U3pI=\nSig: a:b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ni, err := ParseNarInfo(data)
		if err != nil {
			return
		}
		text := ni.AppendText(nil)
		again, err := ParseNarInfo(text)
		if err != nil {
			t.Fatalf("formatted narinfo does not parse: %v\n%s", err, text)
		}
		if !reflect.DeepEqual(again, ni) {
			t.Fatalf("round trip changed the info:\n%+v\n%+v", ni, again)
		}
		if !bytes.Equal(again.AppendText(nil), text) {
			t.Fatal("formatting is not stable")
		}
	})
}

func TestParseCacheInfo(t *testing.T) {
	nixWritten, err := os.ReadFile("testdata/nix-cache-info")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		text string
		want CacheInfo
	}{
		{string(nixWritten), CacheInfo{StoreDir: "/nix/store"}},
		{"StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n", CacheInfo{"/nix/store", true, 40}},
		{"garbage line\nStoreDir:/nix/store  \nOther: x", CacheInfo{StoreDir: "/nix/store"}},
	}
	for _, tt := range tests {
		ci, err := ParseCacheInfo([]byte(tt.text))
		if err != nil || *ci != tt.want {
			t.Errorf("ParseCacheInfo(%q) = %+v, %v; want %+v", tt.text, ci, err, tt.want)
		}
	}
	if _, err := ParseCacheInfo([]byte("Priority: high\n")); err == nil {
		t.Error("non-numeric Priority accepted")
	}
	ci := CacheInfo{StoreDir: "/nix/store"}
	if got := string(ci.AppendText(nil)); got != string(nixWritten) {
		t.Errorf("AppendText = %q, Nix wrote %q", got, nixWritten)
	}
}

func FuzzParseCacheInfo(f *testing.F) {
	f.Add([]byte("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ci, err := ParseCacheInfo(data)
		if err != nil || strings.ContainsAny(ci.StoreDir, "\n") {
			return
		}
		again, err := ParseCacheInfo(ci.AppendText(nil))
		if err != nil || *again != *ci {
			t.Fatalf("round trip: %+v -> %+v, %v", ci, again, err)
		}
	})
}
