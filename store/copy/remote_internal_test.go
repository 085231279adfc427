package copy

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store"
)

func TestChooseCompression(t *testing.T) {
	for _, c := range []struct {
		want, proto    string
		zstd, xz, here bool
		got            string // "" for an error
	}{
		{"auto", "daemon", true, true, false, "zstd"},
		{"", "daemon", true, true, false, "zstd"},
		{"auto", "daemon", false, true, false, "none"},
		{"auto", "daemon", true, true, true, "none"},
		{"zstd", "daemon", true, true, true, "zstd"},
		{"zstd", "daemon", false, true, false, ""},
		{"xz", "daemon", true, false, false, ""},
		{"xz", "daemon", true, true, false, "xz"},
		{"none", "daemon", true, true, false, "none"},
		{"auto", "serve", true, true, false, "none"},
		{"zstd", "serve", true, true, false, ""},
		{"gzip", "daemon", true, true, false, ""},
	} {
		got, err := chooseCompression(c.want, c.proto, c.zstd, c.xz, c.here)
		if (err != nil) != (c.got == "") || got != c.got {
			t.Errorf("chooseCompression(%q, %q, zstd %v, xz %v, local %v) = %q, %v; want %q",
				c.want, c.proto, c.zstd, c.xz, c.here, got, err, c.got)
		}
	}
}

func TestIsLocal(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "root@localhost": true, "127.0.0.1": true, "root@127.0.0.1": true,
		"127.1.2.3": true, "::1": true, "me@[::1]": true,
		"board": false, "root@board.lan": false, "10.0.0.2": false, "pi@192.168.1.20": false,
		"fe80::1": false, "localhost.example.org": false,
	} {
		if got := isLocal(host); got != want {
			t.Errorf("isLocal(%q) = %v, want %v", host, got, want)
		}
	}
}

// pathInfosSeed is what Nix 2.8's `nix path-info --json -r` printed for a
// chain of two paths, one signed and one content-addressed.
const pathInfosSeed = `[{"path":"/nix/store/13221r1ib1ddlk0srkcqnq1jdm09wrzy-copytest-a","narHash":"sha256-9ucksSdZ9ntCT/gIufvOGJBqJwqpZDzf2RtN9SoPUsw=","narSize":4490896,"references":[],"deriver":"/nix/store/4k1aja9rn9rkk2cpsd3smrjdqic0gf0z-copytest-a.drv","registrationTime":1795436104,"ultimate":true,"signatures":["test-1:aGVsbG8="],"ca":"fixed:r:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"},{"path":"/nix/store/kv1wdawdc21dkw6s3y2ihcclfccapbza-copytest-d","narHash":"sha256-E7ocVjZaLbOp5JPc8G9rdq21LI3ESBfpKKppVaCO5Ao=","narSize":4490944,"references":["/nix/store/13221r1ib1ddlk0srkcqnq1jdm09wrzy-copytest-a","/nix/store/kv1wdawdc21dkw6s3y2ihcclfccapbza-copytest-d"],"deriver":"/nix/store/pjjpk21ldxqcd73hccpbaw72bqqb9vr4-copytest-d.drv","registrationTime":1795436104,"ultimate":true}]`

func TestParsePathInfosJSON(t *testing.T) {
	// Two xargs batches, the referrer first: the result is references first.
	batches := pathInfosSeed[:1] + pathInfosSeed[strings.Index(pathInfosSeed, `},{`)+2:] + "\n" +
		pathInfosSeed[:strings.Index(pathInfosSeed, `},{`)+1] + "]"
	for _, in := range []string{pathInfosSeed, batches} {
		infos, err := parsePathInfosJSON(in)
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) != 2 || infos[0].Path.Name() != "copytest-a" || infos[1].Path.Name() != "copytest-d" {
			t.Fatalf("order: %v", infos)
		}
		a, d := infos[0], infos[1]
		if want, _ := base64.StdEncoding.DecodeString("9ucksSdZ9ntCT/gIufvOGJBqJwqpZDzf2RtN9SoPUsw="); !bytes.Equal(a.NarHash[:], want) {
			t.Errorf("narHash %x, want %x", a.NarHash, want)
		}
		if a.NarSize != 4490896 || a.Deriver.Name() != "copytest-a.drv" || len(a.Sigs) != 1 || !strings.HasPrefix(a.CA, "fixed:r:sha256:") {
			t.Errorf("a = %+v", a)
		}
		if len(d.References) != 2 || d.Sigs != nil || d.CA != "" {
			t.Errorf("d = %+v", d)
		}
	}
	// Each malformed listing fails for its own reason, not a neighbour's.
	const hash = `"narHash":"sha256-9ucksSdZ9ntCT/gIufvOGJBqJwqpZDzf2RtN9SoPUsw="`
	for _, tt := range []struct {
		name, in string
		want     string // in the error's text
		is       error  // and in its chain, when not nil
	}{
		{"empty", "", "listed no path infos", nil},
		{"not json", "error: path is not valid", "path infos from the remote: invalid character", nil},
		{"bad path", `[{"path":"/nix/store/xyz",` + hash + `}]`, `path info of "/nix/store/xyz"`, store.ErrInvalidPath},
		{"md5 hash", `[{"path":"/nix/store/13221r1ib1ddlk0srkcqnq1jdm09wrzy-copytest-a","narHash":"md5-aGVsbG8="}]`, "is not a SHA-256 hash", nil},
		{"short hash", `[{"path":"/nix/store/13221r1ib1ddlk0srkcqnq1jdm09wrzy-copytest-a","narHash":"sha256-aGVsbG8="}]`, "bad encoding", nil},
		{"bad ref", `[{"path":"/nix/store/13221r1ib1ddlk0srkcqnq1jdm09wrzy-copytest-a",` + hash + `,"references":["x"]}]`, "reference: ", store.ErrInvalidPath},
		{"ref cycle", `[{"path":"/nix/store/13221r1ib1ddlk0srkcqnq1jdm09wrzy-a",` + hash + `,"references":["/nix/store/kv1wdawdc21dkw6s3y2ihcclfccapbza-b"]},{"path":"/nix/store/kv1wdawdc21dkw6s3y2ihcclfccapbza-b",` + hash + `,"references":["/nix/store/13221r1ib1ddlk0srkcqnq1jdm09wrzy-a"]}]`, "reference cycle through", nil},
		{"empty array", "[]", "listed no path infos", nil},
	} {
		infos, err := parsePathInfosJSON(tt.in)
		if err == nil {
			t.Errorf("%s: accepted as %v", tt.name, infos)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) || (tt.is != nil && !errors.Is(err, tt.is)) {
			t.Errorf("%s: error %q, want one containing %q (and wrapping %v)", tt.name, err, tt.want, tt.is)
		}
	}
}

// FuzzParsePathInfosJSON: whatever a remote prints, the parser never
// panics, and what it accepts is references first with valid paths.
func FuzzParsePathInfosJSON(f *testing.F) {
	f.Add(pathInfosSeed)
	f.Add(pathInfosSeed + pathInfosSeed)
	f.Add(`[{"path":"/nix/store/13221r1ib1ddlk0srkcqnq1jdm09wrzy-a","narHash":"sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"}]`)
	f.Fuzz(func(t *testing.T, s string) {
		infos, err := parsePathInfosJSON(s)
		if err != nil {
			return
		}
		pos := map[store.Path]int{}
		for i, info := range infos {
			if info.Path.IsZero() {
				t.Fatalf("zero path accepted")
			}
			pos[info.Path] = i
		}
		for i, info := range infos {
			for _, r := range info.References {
				if j, ok := pos[r]; ok && r != info.Path && j > i {
					t.Fatalf("%s listed before its reference %s", info.Path, r)
				}
			}
		}
	})
}
