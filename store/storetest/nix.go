// Package storetest holds what store tests share: the conformance suite
// every store.Store implementation passes, and the gates that tie tests to
// the real Nix installed by scripts/test-deps.sh.
package storetest

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store"
)

// DaemonSocket is where the local nix-daemon listens.
const DaemonSocket = store.DaemonSocket

// RequireNix skips the test when Nix's command-line tools are missing, or
// fails it when CI=true: in CI a missing Nix is a broken setup, not a
// reason to run fewer tests. Run `make test` to install Nix.
func RequireNix(t testing.TB) {
	t.Helper()
	RequireTools(t, "nix-store", "nix-instantiate", "nix-daemon")
}

// RequireTools is the gate of every test that runs an outside program:
// it skips the test when one of tools is not on PATH, or fails it when
// CI=true, where scripts/test-deps.sh has installed them all. Call it
// before any setup, so a skipped test costs nothing.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing(t, tool+" not on PATH (run scripts/test-deps.sh)")
		}
	}
}

// RequireDaemon is RequireNix plus a listening local nix-daemon.
func RequireDaemon(t testing.TB) {
	t.Helper()
	RequireNix(t)
	if fi, err := os.Stat(DaemonSocket); err != nil || fi.Mode()&os.ModeSocket == 0 {
		missing(t, "no nix-daemon socket at "+DaemonSocket+" (run scripts/test-deps.sh)")
	}
}

// RequireRoot gates tests that create mount namespaces or chroot stores.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "needs root (mount namespaces, sshd)")
	}
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and %s", why)
	}
	t.Skip(why)
}

// localContentExpr builds a small closure of every kind a store holds:
// outputs with a deriver and references (b refers to a), .drv files that
// refer to each other and to a text source (builtins.toFile).
const localContentExpr = `{ nonce }: rec {
  src = builtins.toFile "storetest-src" nonce;
  a = derivation { name = "storetest-a"; system = builtins.currentSystem; builder = "/bin/sh";
    args = ["-c" "echo ${nonce} > $out"]; };
  b = derivation { name = "storetest-b"; system = builtins.currentSystem; builder = "/bin/sh";
    args = ["-c" "read x < ${src}; echo $x ${a} > $out"]; };
}`

// LocalContent makes its own content in this machine's store with real
// Nix, so tests that compare with the machine's store work on a fresh
// one (Debian's nix-bin starts empty) and never depend on what happens to
// be there. It returns, sorted, two built outputs (with a deriver, one
// referring to the other), their two .drv files, the text source the
// second .drv refers to, and a tree added with `nix-store --add`
// (content-addressed, fixed:r:sha256). Everything carries a fresh nonce
// and stays rooted (GC roots in a temporary directory) until the test
// ends.
func LocalContent(t testing.TB) []store.Path {
	t.Helper()
	RequireDaemon(t)
	dir := t.TempDir()
	nonce := hex.EncodeToString(randomBytes(t, 16))
	expr := filepath.Join(dir, "content.nix")
	src := filepath.Join(dir, "storetest-added")
	for name, data := range map[string]string{expr: localContentExpr, src: nonce + "\n"} {
		if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(name string, args ...string) []string {
		t.Helper()
		out, err := exec.Command(name, args...).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = fmt.Errorf("%w: %s", err, ee.Stderr)
			}
			t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
		}
		return strings.Fields(string(out))
	}
	args := []string{"--option", "substituters", "", "-o", filepath.Join(dir, "result"),
		expr, "--argstr", "nonce", nonce, "-A", "a", "-A", "b"}
	outs := run("nix-build", args...)
	drvs := run("nix-store", "-q", "--deriver", outs[0], outs[1])
	added := run("nix-store", "--add", src)
	run("nix-store", "--realise", "--add-root", filepath.Join(dir, "added"), "--indirect", added[0])
	srcs := run("nix-store", "-q", "--references", drvs[1])
	var ps []store.Path
	for _, s := range slices.Concat(outs, drvs, added, srcs) {
		p, err := store.ParsePath(s)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	store.SortPaths(ps)
	return ps
}

// NoGoroutinesIn fails t if a goroutine is running code of a non-test
// file whose path contains dir (e.g. "/store/daemon/"): an operation that
// joins its goroutines before it returns leaves none, so the check needs
// no waiting and no goroutine counts. Goroutines that run only test code
// (a fake peer) or other packages are not counted.
func NoGoroutinesIn(t testing.TB, dir string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, line := range strings.Split(g, "\n") {
			file, _, ok := strings.Cut(strings.TrimSpace(line), ".go:")
			if ok && strings.Contains(file, dir) && !strings.HasSuffix(file, "_test") {
				t.Errorf("a goroutine outlived the operation:\n%s", g)
				break
			}
		}
	}
}

// RequireTrusted is RequireDaemon plus a user the local nix-daemon trusts
// (its trusted-users: root by default), for tests that pass --builders or
// substituters to it, sign paths, or import without signatures: the
// daemon ignores or refuses those for other users.
func RequireTrusted(t testing.TB) {
	t.Helper()
	RequireDaemon(t)
	if os.Geteuid() != 0 {
		missing(t, "needs a user the nix-daemon trusts (root by default)")
	}
}

// TempDir is t.TempDir for a directory that will hold a store Nix writes
// into (a chroot store, a restored tree): store paths are read-only, so
// they are made writable again before the directory is removed, which
// lets a test run by a user other than root clean up after itself.
func TempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	// Cleanups run last-registered first: this one before TempDir's.
	t.Cleanup(func() {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	return dir
}

// SilentServer listens on a loopback port, accepts every connection and
// never answers (a substituter that hangs), until the test ends. It
// returns its "http://127.0.0.1:PORT" URL.
func SilentServer(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return "http://" + l.Addr().String()
}
