package store_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/storetest"
)

const hash = "ggbqg8lqjwj75wznkv03h0x2bjr2in0j"

func TestParsePath(t *testing.T) {
	long := strings.Repeat("a", store.MaxNameLen)
	cases := []struct {
		name, path, err string
	}{
		{"plain", "/nix/store/" + hash + "-a", ""},
		{"drv", "/nix/store/" + hash + "-hello-2.12.drv", ""},
		{"every allowed character", "/nix/store/" + hash + "-aZ09+-._?=", ""},
		{"longest name", "/nix/store/" + hash + "-" + long, ""},
		{"name too long", "/nix/store/" + hash + "-" + long + "a", "name longer than 211 bytes"},
		{"empty name", "/nix/store/" + hash + "-", "too short"},
		{"no dash", "/nix/store/" + hash + "xa", "no '-' after the hash part"},
		{"hash too short", "/nix/store/" + hash[:31] + "-a", "too short"},
		{"hash too short, long name", "/nix/store/" + hash[:31] + "-abc", "no '-' after the hash part"},
		{"e is not nix32", "/nix/store/" + "e" + hash[1:] + "-a", "invalid character 'e' in hash part"},
		{"uppercase hash", "/nix/store/" + strings.ToUpper(hash) + "-a", "invalid character"},
		{"space in name", "/nix/store/" + hash + "-a b", "invalid character ' ' in name"},
		{"slash in name", "/nix/store/" + hash + "-a/b", "invalid character '/' in name"},
		{"other store dir", "/gnu/store/" + hash + "-a", "not in /nix/store"},
		{"relative", "nix/store/" + hash + "-a", "not in /nix/store"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := store.ParsePath(tc.path)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("ParsePath(%q): %v", tc.path, err)
				}
				if p.String() != tc.path || p.IsZero() {
					t.Errorf("round trip: %q -> %q", tc.path, p.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, store.ErrInvalidPath) {
				t.Errorf("ParsePath(%q) = %v, want an ErrInvalidPath saying %q", tc.path, err, tc.err)
			}
		})
	}
}

func TestPathComparableAndOrdered(t *testing.T) {
	a := store.MustParsePath("/nix/store/" + hash + "-a")
	b := store.MustParsePath("/nix/store/" + hash + "-a")
	c := store.MustParsePath("/nix/store/0" + hash[1:] + "-b")
	if a != b || a == c {
		t.Fatal("paths with equal digest and name must be ==, others not")
	}
	m := map[store.Path]int{a: 1}
	if m[b] != 1 {
		t.Fatal("Path is not usable as a map key")
	}
	ps := []store.Path{a, c}
	store.SortPaths(ps)
	if ps[0] != c || c.Compare(a) >= 0 {
		t.Errorf("Nix orders by base name: %v", ps)
	}
	p, rest, err := store.SplitPath("/nix/store/" + hash + "-a/bin/a")
	if err != nil || p != a || rest != "/bin/a" {
		t.Errorf("SplitPath = %v %q %v", p, rest, err)
	}
}

// TestMakeSourcePathMatchesNix adds files and a directory with real
// nix-store --add and recomputes their paths from the NAR hash.
func TestMakeSourcePathMatchesNix(t *testing.T) {
	storetest.RequireNix(t)
	dir := storetest.TempDir(t)
	root := filepath.Join(dir, "store")
	tree := filepath.Join(dir, "src-tree")
	if err := os.MkdirAll(filepath.Join(tree, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"f": "hello\n", "sub/g": "", "sub/x.sh": "#!/bin/sh\n"} {
		if err := os.WriteFile(filepath.Join(tree, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	single := filepath.Join(dir, "single.txt")
	if err := os.WriteFile(single, []byte("contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{tree, single} {
		out, err := exec.Command("nix-store", "--store", root, "--add", src).Output()
		if err != nil {
			t.Fatalf("nix-store --add %s: %v", src, err)
		}
		want := strings.TrimSpace(string(out))
		h, _, err := nar.HashPath(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := store.MakeSourcePath(filepath.Base(src), h, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if got.String() != want {
			t.Errorf("%s: MakeSourcePath = %s, nix-store --add = %s", src, got, want)
		}
	}
}

func FuzzParsePath(f *testing.F) {
	f.Add("/nix/store/" + hash + "-a")
	f.Add("/nix/store/" + hash + "-hello-2.12.drv")
	f.Add("/nix/store/" + hash + "-")
	f.Add("/nix/store/" + hash)
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := store.ParsePath(s)
		if err != nil {
			if !errors.Is(err, store.ErrInvalidPath) {
				t.Fatalf("error %v does not wrap ErrInvalidPath", err)
			}
			return
		}
		if p.String() != s {
			t.Fatalf("accepted %q but prints %q", s, p.String())
		}
		q, err := store.ParseBase(p.Base())
		if err != nil || q != p {
			t.Fatalf("ParseBase(Base()) = %v, %v", q, err)
		}
	})
}

func TestAppendBase(t *testing.T) {
	p := store.MustParsePath("/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60_p20170221182432")
	buf := []byte("prefix:")
	if got := string(p.AppendBase(buf)); got != "prefix:"+p.Base() {
		t.Errorf("AppendBase = %q, want %q", got, "prefix:"+p.Base())
	}
	buf = make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = p.AppendBase(buf[:0]) }); n != 0 {
		t.Errorf("AppendBase into a buffer with room: %v allocations", n)
	}
}

func TestAppendTo(t *testing.T) {
	const s = "/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60_p20170221182432"
	p := store.MustParsePath(s)
	if got := string(p.AppendTo([]byte("prefix:"))); got != "prefix:"+s {
		t.Errorf("AppendTo = %q, want %q", got, "prefix:"+s)
	}
	if got := p.String(); got != s {
		t.Errorf("String = %q, want %q", got, s)
	}
	if got := string(store.Path{}.AppendTo([]byte("x"))); got != "x" {
		t.Errorf("zero Path: AppendTo = %q, want nothing appended", got)
	}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = p.AppendTo(buf[:0]) }); n != 0 {
		t.Errorf("AppendTo into a buffer with room: %v allocations", n)
	}
}

// BenchmarkParsePath: every graph load and snapshot parses thousands.
func BenchmarkParsePath(b *testing.B) {
	const s = "/nix/store/1b8m03r63zqhnjf7l5wnldhh7c134ap5-hello-2.12.1.drv"
	b.ReportAllocs()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if _, err := store.ParsePath(s); err != nil {
			b.Fatal(err)
		}
	}
}
