package nar_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/store/storetest"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// makeFixture builds a tree with every entry kind and the sorting and
// padding edge cases, and returns its path.
func makeFixture(t testing.TB) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "fixture")
	mk := func(rel string, data []byte, mode os.FileMode) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []int{0, 1, 7, 8, 9} {
		mk(filepath.Join("sizes", "f"+strings.Repeat("x", n)), bytes.Repeat([]byte{'a' + byte(n)}, n), 0o644)
	}
	for _, name := range []string{"B", "_", "a", "été", "日本", "a b", "a.b", "-x"} {
		mk(filepath.Join("sorted", name), []byte(name), 0o644)
	}
	mk("bin/tool", []byte("#!/bin/sh\necho hi\n"), 0o755)
	mk("bin/owner-only-exec", []byte("x"), 0o700)
	mk("bin/group-exec-only", []byte("x"), 0o654) // no S_IXUSR: not executable
	mk("deep/a/b/c/d/e/f/g/file", []byte("deep"), 0o644)
	mk("empty-file", nil, 0o644)
	big := make([]byte, 5<<20+3)
	for i := range big {
		big[i] = byte(i*7 + i>>11)
	}
	mk("big/blob", big, 0o644)
	if err := os.MkdirAll(filepath.Join(root, "empty-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"links/rel":      "../bin/tool",
		"links/abs":      "/etc/passwd",
		"links/dangling": "does/not/exist",
		"links/dir":      "../deep",
		"links/self":     "self",
		"links/utf8":     "été",
	} {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func nixDump(t testing.TB, path string) []byte {
	t.Helper()
	out, err := exec.Command("nix-store", "--dump", path).Output()
	if err != nil {
		t.Fatalf("nix-store --dump %s: %v", path, stderrOf(err))
	}
	return out
}

func stderrOf(err error) error {
	if ee, ok := err.(*exec.ExitError); ok {
		return &stderrError{err, string(ee.Stderr)}
	}
	return err
}

type stderrError struct {
	err    error
	stderr string
}

func (e *stderrError) Error() string { return e.err.Error() + ": " + e.stderr }

func dump(t testing.TB, path string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := nar.DumpPath(&buf, path); err != nil {
		t.Fatalf("DumpPath(%s): %v", path, err)
	}
	return buf.Bytes()
}

func TestDumpMatchesNixStore(t *testing.T) {
	storetest.RequireNix(t)
	root := makeFixture(t)
	for _, rel := range []string{"", "big/blob", "empty-file", "links/abs", "bin/tool", "empty-dir", "sorted"} {
		p := filepath.Join(root, rel)
		want := nixDump(t, p)
		got := dump(t, p)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: DumpPath differs from nix-store --dump (%d vs %d bytes, first difference at %d)",
				rel, len(got), len(want), firstDiff(got, want))
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestHashMatchesNixHash(t *testing.T) {
	storetest.RequireNix(t)
	root := makeFixture(t)
	sum, size, err := nar.HashPath(root)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nix-hash", "--type", "sha256", "--base32", root).Output()
	if err != nil {
		t.Fatal(stderrOf(err))
	}
	if got, want := nixbase32.EncodeToString(sum[:]), strings.TrimSpace(string(out)); got != want {
		t.Errorf("HashPath = %s, nix-hash says %s", got, want)
	}
	if want := int64(len(nixDump(t, root))); size != want {
		t.Errorf("HashPath size = %d, want %d", size, want)
	}
}

// buildExpr is a tiny derivation with every entry kind, built by the real
// nix-build (no nixpkgs: /bin/sh and absolute coreutils).
const buildExpr = `derivation {
  name = "nbuild-nar-test";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" ''
    /bin/mkdir -p $out/bin $out/share/empty $out/lib
    echo '#!/bin/sh' > $out/bin/hello
    /bin/chmod +x $out/bin/hello
    printf 1234567 > $out/lib/seven
    : > $out/lib/empty
    /bin/ln -s ../bin/hello $out/lib/link
    /bin/ln -s /dangling/abs $out/lib/abs
    /bin/ln -s $out/lib/seven $out/self-ref
  '' ];
}`

// storePaths builds the test derivation and returns it with up to n-1
// other valid store paths.
func storePaths(t testing.TB, n int) []string {
	t.Helper()
	storetest.RequireDaemon(t)
	out, err := exec.Command("nix-build", "--no-out-link", "-E", buildExpr).Output()
	if err != nil {
		t.Fatalf("nix-build: %v", stderrOf(err))
	}
	paths := []string{strings.TrimSpace(string(out))}
	out, err = exec.Command("nix", "--extra-experimental-features", "nix-command", "path-info", "--all").Output()
	if err != nil {
		t.Fatalf("nix path-info --all: %v", stderrOf(err))
	}
	for _, p := range strings.Fields(string(out)) {
		if len(paths) >= n {
			break
		}
		paths = append(paths, p)
	}
	return paths
}

func TestStorePathsMatchNarHash(t *testing.T) {
	paths := storePaths(t, 60)
	checked := 0
	for _, p := range paths {
		out, err := exec.Command("nix-store", "-q", "--hash", p).Output()
		if err != nil {
			continue // not valid (e.g. a temp root leftover)
		}
		sum, _, err := nar.HashPath(p)
		if err != nil {
			t.Errorf("HashPath(%s): %v", p, err)
			continue
		}
		if got, want := "sha256:"+nixbase32.EncodeToString(sum[:]), strings.TrimSpace(string(out)); got != want {
			t.Errorf("%s: HashPath = %s, nix-store -q --hash = %s", p, got, want)
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no valid store path checked")
	}
	// The built path byte for byte, and restored from Nix's dump.
	want := nixDump(t, paths[0])
	if got := dump(t, paths[0]); !bytes.Equal(got, want) {
		t.Errorf("%s: DumpPath differs from nix-store --dump at byte %d", paths[0], firstDiff(got, want))
	}
	dst := filepath.Join(t.TempDir(), "out")
	if err := nar.Restore(bytes.NewReader(want), dst, nar.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	treeEqual(t, paths[0], dst)
	t.Logf("%d store paths hash like nix-store -q --hash", checked)
}

// treeEqual compares two trees: types, contents, exec bit, link targets.
func treeEqual(t *testing.T, a, b string) {
	t.Helper()
	err := filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		q := filepath.Join(b, rel)
		fa, err := os.Lstat(p)
		if err != nil {
			return err
		}
		fb, err := os.Lstat(q)
		if err != nil {
			t.Errorf("%s: missing in restored tree: %v", rel, err)
			return nil
		}
		if fa.Mode().Type() != fb.Mode().Type() {
			t.Errorf("%s: type %v vs %v", rel, fa.Mode().Type(), fb.Mode().Type())
			return nil
		}
		switch {
		case fa.Mode().IsRegular():
			if fa.Mode()&0o100 != fb.Mode()&0o100 {
				t.Errorf("%s: exec bit %v vs %v", rel, fa.Mode(), fb.Mode())
			}
			da, _ := os.ReadFile(p)
			db, _ := os.ReadFile(q)
			if !bytes.Equal(da, db) {
				t.Errorf("%s: contents differ", rel)
			}
		case fa.Mode()&fs.ModeSymlink != 0:
			ta, _ := os.Readlink(p)
			tb, _ := os.Readlink(q)
			if ta != tb {
				t.Errorf("%s: link %q vs %q", rel, ta, tb)
			}
		case fa.IsDir():
			ea, _ := os.ReadDir(p)
			eb, _ := os.ReadDir(q)
			if len(ea) != len(eb) {
				t.Errorf("%s: %d vs %d entries", rel, len(ea), len(eb))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRestoreOfNixDump(t *testing.T) {
	storetest.RequireNix(t)
	root := makeFixture(t)
	data := nixDump(t, root)
	dst := filepath.Join(t.TempDir(), "out")
	if err := nar.Restore(bytes.NewReader(data), dst, nar.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	treeEqual(t, root, dst)
	if again := dump(t, dst); !bytes.Equal(again, data) {
		t.Errorf("dump of restored tree differs from nix-store --dump of the original")
	}
	// No staging directory is left beside the target.
	entries, _ := os.ReadDir(filepath.Dir(dst))
	if len(entries) != 1 {
		t.Errorf("restore left %d entries beside the target", len(entries))
	}
}

func TestNixRestoresOurDump(t *testing.T) {
	storetest.RequireNix(t)
	root := makeFixture(t)
	data := dump(t, root)
	dst := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command("nix-store", "--restore", dst)
	cmd.Stdin = bytes.NewReader(data)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nix-store --restore: %v: %s", err, out)
	}
	treeEqual(t, root, dst)
}

func TestReadRoundTripRealNAR(t *testing.T) {
	storetest.RequireNix(t)
	root := makeFixture(t)
	data := nixDump(t, root)
	got := rewrite(t, data)
	if !bytes.Equal(got, data) {
		t.Fatalf("write(read(nar)) differs at byte %d", firstDiff(got, data))
	}
	var cp bytes.Buffer
	n, err := nar.Copy(&cp, bytes.NewReader(data))
	if err != nil || n != int64(len(data)) || !bytes.Equal(cp.Bytes(), data) {
		t.Fatalf("Copy = %d, %v; equal=%v", n, err, bytes.Equal(cp.Bytes(), data))
	}
	if s := sha256.Sum256(data); s != sha256.Sum256(cp.Bytes()) {
		t.Fatal("copy hash differs")
	}
}

// rewrite reads a NAR with Reader and writes it back with Writer.
func rewrite(t testing.TB, data []byte) []byte {
	t.Helper()
	out, err := rewriteErr(data)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func rewriteErr(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	nr := nar.NewReader(bytes.NewReader(data))
	nw := nar.NewWriter(&buf)
	for {
		h, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if err := nw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Type == nar.TypeRegular {
			if _, err := io.Copy(nw, nr); err != nil {
				return nil, err
			}
		}
	}
	if err := nw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
