package installable_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbuild/nbuild/eval/installable"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/storetest"
)

// project writes a directory with both default.nix and flake.nix, whose
// derivations have different names, so a test sees which one Nix read.
func project(t *testing.T) (dir, nonce string) {
	t.Helper()
	dir = t.TempDir()
	nonce = fmt.Sprint(time.Now().UnixNano())
	mk := func(name string) string {
		return fmt.Sprintf(`derivation { name = "%s-%s"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo > $out"]; }`, name, nonce)
	}
	files := map[string]string{
		"default.nix":       "{ legacy = " + mk("legacy") + "; }",
		"flake.nix":         "{ outputs = { self }: { packages.x86_64-linux.default = " + mk("flake-default") + "; packages.x86_64-linux.other = " + mk("flake-other") + "; }; }",
		"plain/default.nix": mk("plain-dir"),
		"file.nix":          "{ a = " + mk("file-a") + "; b = " + mk("file-b") + "; }",
	}
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, nonce
}

func names(ps []store.Path, nonce string) string {
	var s []string
	for _, p := range ps {
		s = append(s, strings.TrimSuffix(strings.TrimSuffix(p.Name(), ".drv"), "-"+nonce))
	}
	return strings.Join(s, " ")
}

// TestResolve hands each form to the real Nix: a directory with flake.nix
// is a flake (as `nix build .`), one without is default.nix (as
// nix-build), FILE.nix takes -A, flake references take #ATTR and schemes.
func TestResolve(t *testing.T) {
	storetest.RequireDaemon(t)
	dir, nonce := project(t)
	t.Chdir(dir)
	ctx := context.Background()
	for _, tc := range []struct {
		args  []string
		attrs []string
		want  string
	}{
		{[]string{"."}, nil, "flake-default"},
		{[]string{dir}, nil, "flake-default"},
		{[]string{".#other"}, nil, "flake-other"},
		{[]string{"path:" + dir + "#other"}, nil, "flake-other"},
		{[]string{"./plain"}, nil, "plain-dir"},
		{[]string{"file.nix"}, []string{"b", "a"}, "file-b file-a"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			ps, err := installable.Resolve(ctx, tc.args, installable.Options{Attrs: tc.attrs})
			if err != nil {
				t.Fatal(err)
			}
			if got := names(ps, nonce); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			// A .drv path resolves to itself.
			again, err := installable.Resolve(ctx, []string{ps[0].String()}, installable.Options{})
			if err != nil || again[0] != ps[0] {
				t.Errorf("%s: %v %v", ps[0], again, err)
			}
		})
	}
}

// TestResolveOutput maps a built output (and a ./result symlink to it) to
// its deriver.
func TestResolveOutput(t *testing.T) {
	storetest.RequireDaemon(t)
	dir, nonce := project(t)
	link := filepath.Join(dir, "result")
	if out, err := exec.Command("nix-build", "--option", "substituters", "", "-o", link, filepath.Join(dir, "file.nix"), "-A", "a").CombinedOutput(); err != nil {
		t.Fatalf("nix-build: %v\n%s", err, out)
	}
	ps, err := installable.Resolve(context.Background(), []string{link}, installable.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(ps, nonce); got != "file-a" {
		t.Errorf("got %q", got)
	}
}

// TestResolveErrors: errors are Nix's words about what the user typed,
// with no trace of how nbuild asked.
func TestResolveErrors(t *testing.T) {
	storetest.RequireDaemon(t)
	dir, _ := project(t)
	t.Chdir(dir)
	for arg, want := range map[string]string{
		".#nope":            "does not provide attribute 'packages.x86_64-linux.nope'",
		"/tmp/not-in-store": "path '/tmp/not-in-store' is not in the Nix store",
		store.StoreDir + "/00000000000000000000000000000000-x.drv": "does not exist in the store",
	} {
		_, err := installable.Resolve(context.Background(), []string{arg}, installable.Options{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", arg, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "drvPath") {
			t.Errorf("%s: the error shows nbuild's query: %v", arg, err)
		}
	}
}
