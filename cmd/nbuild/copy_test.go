package main

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store/storetest"
	"github.com/nbuild/nbuild/store/testhost"
)

// copyClosure builds the copy fixture (five paths in a chain) with a fresh
// salt and returns its root and closure, referrers last.
func copyClosure(t *testing.T, salt string) (string, []string) {
	t.Helper()
	return buildFixture(t, "closure.nix", salt)
}

// buildFixture builds one of store/copy's Nix fixtures with a salt and
// returns its root and closure, referrers last.
func buildFixture(t *testing.T, file, salt string) (string, []string) {
	t.Helper()
	storetest.RequireDaemon(t)
	out, err := exec.Command("nix-build", "--option", "substituters", "", "--no-out-link",
		"../../store/copy/testdata/"+file, "--argstr", "salt", salt).CombinedOutput()
	if err != nil {
		t.Fatalf("nix-build: %v\n%s", err, out)
	}
	lines := strings.Fields(string(out))
	root := lines[len(lines)-1]
	return root, strings.Fields(nixLocal(t, "-q", "--requisites", root))
}

func uniqueSalt(t *testing.T) string {
	return t.Name() + time.Now().Format(time.RFC3339Nano)
}

// sameOnHost checks that each path is valid on h with the hash,
// references and deriver it has locally.
func sameOnHost(t *testing.T, h *testhost.Host, paths []string) {
	t.Helper()
	for _, p := range paths {
		if _, err := h.Run("nix-store", "--verify-path", p); err != nil {
			t.Errorf("%s not valid on the host: %v", p, err)
			continue
		}
		for _, q := range []string{"--hash", "--references", "--deriver"} {
			if l, r := nixLocal(t, "-q", q, p), h.MustRun("nix-store", "-q", q, p); strings.TrimSpace(l) != strings.TrimSpace(r) {
				t.Errorf("%s %s: local %q, host %q", q, p, l, r)
			}
		}
	}
}

func TestCopyToHost(t *testing.T) {
	root, closure := copyClosure(t, uniqueSalt(t))
	h := testhost.New(t, testhost.Options{})
	// ./result style: a symlink to the root, as nix-build leaves it.
	link := filepath.Join(storetest.TempDir(t), "result")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runWithEnv(t, h.Getenv, "copy", "--to", "-v", h.Addr, link)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	sameOnHost(t, h, closure)
	// In a pipe: nix-copy-closure's lines, the count and (-v) each path.
	if n := strings.Count(errOut, "copying path "); n != len(closure) || !strings.HasPrefix(errOut, fmt.Sprintf("copying %d paths...\n", len(closure))) {
		t.Errorf("-v listed %d paths, want %d:\n%s", n, len(closure), errOut)
	}
	// Everything is there now: the rerun sends nothing, and says nothing.
	_, errOut, code = runWithEnv(t, h.Getenv, "copy", "-v", h.Addr, root)
	if code != 0 || strings.Contains(errOut, "copying") {
		t.Errorf("second copy: exit %d, output:\n%s", code, errOut)
	}
}

func TestCopyFromHost(t *testing.T) {
	storetest.RequireDaemon(t)
	h := testhost.New(t, testhost.Options{})
	// A chain of three paths only the host has, built there: the NARs
	// come back to back on the one session, references first.
	expr := filepath.Join(storetest.TempDir(t), "remote.nix")
	salt := uniqueSalt(t)
	if err := os.WriteFile(expr, []byte(fmt.Sprintf(`let
  mk = name: dep: derivation { inherit name dep; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" "echo %s $dep > $out" ]; };
  a = mk "copy-from-a" "";
  b = mk "copy-from-b" a;
in mk "copy-from-c" b`, salt)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := strings.TrimSpace(h.MustRun("nix-build", "--option", "substituters", "", "--no-out-link", expr))
	closure := strings.Fields(h.MustRun("nix-store", "-qR", out))
	if len(closure) != 3 {
		t.Fatalf("closure of %s: %v", out, closure)
	}
	for _, p := range closure {
		if _, err := exec.Command("nix-store", "--check-validity", p).CombinedOutput(); err == nil {
			t.Fatalf("%s is already valid locally", p)
		}
	}
	_, errOut, code := runWithEnv(t, h.Getenv, "copy", "--from", h.Addr, out)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	for _, p := range closure {
		nixLocal(t, "--verify-path", p)
		for _, q := range []string{"--hash", "--references", "--deriver"} {
			if l, r := nixLocal(t, "-q", q, p), h.MustRun("nix-store", "-q", q, p); strings.TrimSpace(l) != strings.TrimSpace(r) {
				t.Errorf("%s %s: local %q, host %q", q, p, l, r)
			}
		}
	}
}

// TestCopyFileCache writes a signed cache that real Nix imports with the
// signature checked, then imports it back into the local store after the
// paths were deleted there.
func TestCopyFileCache(t *testing.T) {
	root, closure := copyClosure(t, uniqueSalt(t))
	dir := storetest.TempDir(t)
	sk, pk := filepath.Join(dir, "key.sec"), filepath.Join(dir, "key.pub")
	if out, err := exec.Command("nix-store", "--generate-binary-cache-key", "nbuild-copy-test", sk, pk).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	pub, err := os.ReadFile(pk)
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	for _, comp := range []string{"zstd", "xz"} {
		t.Run(comp, func(t *testing.T) {
			url := "file://" + cache + comp + "?compression=" + comp + "&secret-key=" + sk
			_, errOut, code := runWithEnv(t, os.Getenv, "copy", "--to", url, root)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, errOut)
			}
			chroot := filepath.Join(storetest.TempDir(t), "store")
			out, err := exec.Command("nix", "--extra-experimental-features", "nix-command", "copy",
				"--option", "substituters", "", "--option", "trusted-public-keys", strings.TrimSpace(string(pub)),
				"--from", "file://"+cache+comp, "--to", "local?root="+chroot, root).CombinedOutput()
			if err != nil {
				t.Fatalf("nix copy --from our cache: %v\n%s", err, out)
			}
			for _, p := range closure {
				if l, c := nixLocal(t, "-q", "--hash", p), strings.TrimSpace(nixOut(t, "nix-store", "--store", "local?root="+chroot, "-q", "--hash", p)); l != c {
					t.Errorf("%s: hash %q locally, %q after nix copy from our cache", p, l, c)
				}
			}
		})
	}

	// Back into the local store, after deleting the closure there.
	args := append([]string{"--delete"}, reversed(closure)...)
	if out, err := exec.Command("nix-store", args...).CombinedOutput(); err != nil {
		t.Fatalf("nix-store --delete: %v\n%s", err, out)
	}
	url := "file://" + cache + "zstd"
	// The daemon trusts no key of ours: the import is refused, nothing
	// becomes valid.
	_, errOut, code := runWithEnv(t, os.Getenv, "copy", "--from", url, root)
	if code != 1 || !strings.Contains(errOut, "signature") {
		t.Errorf("import without a trusted signature: exit %d\n%s", code, errOut)
	}
	if _, err := exec.Command("nix-store", "--check-validity", root).CombinedOutput(); err == nil {
		t.Errorf("%s valid after a refused import", root)
	}
	storetest.RequireTrusted(t) // --no-check-sigs is honoured for trusted users only
	_, errOut, code = runWithEnv(t, os.Getenv, "copy", "--from", url, "--no-check-sigs", root)
	if code != 0 {
		t.Fatalf("import with --no-check-sigs: exit %d\n%s", code, errOut)
	}
	for _, p := range closure {
		nixLocal(t, "--verify-path", p)
	}
}

func reversed(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[len(ss)-1-i] = s
	}
	return out
}

func nixOut(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out)
}

func TestCopyUsage(t *testing.T) {
	for _, args := range [][]string{
		{"copy"},
		{"copy", "--to", "--from", "host", "/nix/store/x"},
		{"copy", "--bogus", "host"},
	} {
		if _, _, code := runWithEnv(t, os.Getenv, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	out, _, code := runWithEnv(t, os.Getenv, "copy", "--help")
	if code != 0 || !strings.Contains(out, "Example:") || !strings.Contains(out, "--include-outputs") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
	if _, errOut, code := runWithEnv(t, os.Getenv, "copy", "host", "/tmp/not-in-store"); code != 1 || !strings.Contains(errOut, "is not in the Nix store") {
		t.Errorf("path outside the store: exit %d\n%s", code, errOut)
	}
	// The host forgotten: nix-copy-closure fails (ssh cannot reach a host
	// named like the path), so nbuild copy must not succeed doing nothing.
	for _, args := range [][]string{
		{"copy", "/nix/store/00000000000000000000000000000000-x"},
		{"copy", "--to", "./result"},
		{"copy", "--from", "/nix/store/00000000000000000000000000000000-x", "/nix/store/00000000000000000000000000000000-y"},
	} {
		host := args[slices.IndexFunc(args[1:], func(a string) bool { return !strings.HasPrefix(a, "--") })+1]
		_, errOut, code := runWithEnv(t, os.Getenv, args...)
		if code != 2 || !strings.Contains(errOut, "no host given: '"+host+"' is a path") {
			t.Errorf("%v: exit %d\n%s", args, code, errOut)
		}
	}
	if _, errOut, code := runWithEnv(t, os.Getenv, "copy", "--to", "builder"); code != 2 || !strings.Contains(errOut, "no paths given") {
		t.Errorf("no paths: exit %d\n%s", code, errOut)
	}
}

// TestCopyInterrupted stops copies to a real test host over a slow link
// with a signal sent to the whole process group, as Ctrl-C does (ssh gets
// it too), once the third of the five paths has started; a rerun then
// sends exactly the paths the host still lacks.
func TestCopyInterrupted(t *testing.T) {
	root, closure := copyClosure(t, uniqueSalt(t))
	h := testhost.New(t, testhost.Options{})
	nbuild, ncc := buildNbuild(t)
	said := regexp.MustCompile(`^interrupted: (\d+) of 5 paths are on root@127\.0\.0\.1; run the same command again to send the rest$`)
	for _, tc := range []struct {
		name string
		prog string
		args []string
		sig  syscall.Signal
		code int
		last *regexp.Regexp
	}{
		{"copy-SIGINT", nbuild, []string{"copy", "-v", h.Addr, root}, syscall.SIGINT, 130, said},
		{"copy-SIGTERM", nbuild, []string{"copy", "-v", "--to", h.Addr, root}, syscall.SIGTERM, 143, said},
		// As 2.8: its message, and exit 1.
		{"nix-copy-closure-SIGINT", ncc, []string{"--to", h.Addr, root}, syscall.SIGINT, 1, regexp.MustCompile(`^error: interrupted by the user$`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.MustRun("sh", "-c", "nix-store --delete "+strings.Join(reversed(closure), " ")+" >/dev/null 2>&1 || true")
			relay := testhost.NewRelay(t, h.HostAddr(), testhost.RelayOptions{RateBytesPerSec: 2 << 20})
			cmd := exec.Command(tc.prog, tc.args...)
			cmd.Env = h.EnvPort(relay.Port)
			lines := signalAtThirdPath(t, cmd, tc.sig)
			out := strings.Join(lines, "\n")
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", code, tc.code, out)
			}
			m := tc.last.FindStringSubmatch(lines[len(lines)-1])
			if m == nil {
				t.Fatalf("last line %q, want %s\n%s", lines[len(lines)-1], tc.last, out)
			}
			// Bytes that reached the host before the cut may still be
			// completing a path: end that as the dropped session ends it.
			h.KillSessions()
			invalid := strings.Fields(h.MustRun(append([]string{"nix-store", "--check-validity", "--print-invalid"}, closure...)...))
			valid := len(closure) - len(invalid)
			if len(invalid) == 0 {
				t.Fatalf("the copy completed before the signal\n%s", out)
			}
			if len(m) > 1 {
				if n, _ := strconv.Atoi(m[1]); n > valid {
					t.Errorf("said %d paths are on the host, %d are", n, valid)
				}
			}
			for _, p := range closure {
				if !slices.Contains(invalid, p) {
					h.MustRun("nix-store", "--verify-path", p)
				}
			}
			_, errOut, code := runWithEnv(t, h.Getenv, "copy", "-v", h.Addr, root)
			if code != 0 {
				t.Fatalf("rerun: exit %d\n%s", code, errOut)
			}
			if sent := strings.Count(errOut, "copying path "); sent != len(invalid) {
				t.Errorf("rerun sent %d paths; the host lacked %d:\n%s", sent, len(invalid), errOut)
			}
			for _, p := range invalid {
				if !strings.Contains(errOut, "copying path '"+p+"'") {
					t.Errorf("rerun did not send %s", p)
				}
			}
			sameOnHost(t, h, closure)
			t.Logf("%s: %d of %d paths were on the host\n%s", tc.name, valid, len(closure), out)
		})
	}
}

// signalAtThirdPath runs cmd in a process group of its own and sends the
// group sig as the third "copying path" line arrives on its stderr, as
// Ctrl-C in a terminal would; it returns the stderr lines once cmd ended.
func signalAtThirdPath(t *testing.T, cmd *exec.Cmd, sig syscall.Signal) []string {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	var lines []string
	started := 0
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.HasPrefix(sc.Text(), "copying path ") {
			if started++; started == 3 {
				syscall.Kill(-pgid, sig)
			}
		}
	}
	cmd.Wait()
	return lines
}

// TestCopyDeltaInterrupted presses Ctrl-C in the middle of a delta update
// (the host holds the last generation and the nbuild binary): nbuild says
// how many paths are on the host and exits 130; those are valid and
// intact; the rerun sends the rest, again as a delta.
func TestCopyDeltaInterrupted(t *testing.T) {
	_, old := copyClosure(t, uniqueSalt(t)+"-old")
	root, closure := copyClosure(t, uniqueSalt(t))
	h := testhost.New(t, testhost.Options{})
	nbuild, _ := buildNbuild(t)
	fill := exec.Command(nbuild, "copy", "--to", h.Addr, old[len(old)-1])
	fill.Env = h.Env()
	if out, err := fill.CombinedOutput(); err != nil {
		t.Fatalf("first generation: %v\n%s", err, out)
	}
	data, err := os.ReadFile(nbuild)
	if err != nil {
		t.Fatal(err)
	}
	dir := fmt.Sprintf("$HOME/.cache/nbuild/bin/%x", sha256.Sum256(data))
	h.MustRun("sh", "-c", "mkdir -p "+dir+" && cp "+nbuild+" "+dir+"/nbuild")

	// The last path's 12 MiB of random bytes differ between builds: over
	// 2 MiB/s they keep the copy going long enough to be interrupted.
	relay := testhost.NewRelay(t, h.HostAddr(), testhost.RelayOptions{RateBytesPerSec: 2 << 20})
	cmd := exec.Command(nbuild, "copy", "-v", h.Addr, root)
	cmd.Env = h.EnvPort(relay.Port)
	lines := signalAtThirdPath(t, cmd, syscall.SIGINT)
	out := strings.Join(lines, "\n")
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Fatalf("exit %d, want 130\n%s", code, out)
	}
	said := regexp.MustCompile(`^interrupted: (\d+) of 5 paths are on root@127\.0\.0\.1; run the same command again to send the rest$`)
	m := said.FindStringSubmatch(lines[len(lines)-1])
	if m == nil {
		t.Fatalf("last line %q, want %s\n%s", lines[len(lines)-1], said, out)
	}
	h.KillSessions()
	invalid := strings.Fields(h.MustRun(append([]string{"nix-store", "--check-validity", "--print-invalid"}, closure...)...))
	if len(invalid) == 0 {
		t.Fatalf("the copy completed before the signal\n%s", out)
	}
	if n, _ := strconv.Atoi(m[1]); n > len(closure)-len(invalid) {
		t.Errorf("said %d paths are on the host, %d are", n, len(closure)-len(invalid))
	}
	for _, p := range closure {
		if !slices.Contains(invalid, p) {
			h.MustRun("nix-store", "--verify-path", p)
		}
	}
	_, errOut, code := runWithEnv(t, h.Getenv, "copy", "-v", h.Addr, root)
	if code != 0 {
		t.Fatalf("rerun: exit %d\n%s", code, errOut)
	}
	if sent := strings.Count(errOut, "copying path "); sent != len(invalid) || !strings.Contains(errOut, "delta: ") {
		t.Errorf("rerun sent %d paths; the host lacked %d:\n%s", sent, len(invalid), errOut)
	}
	sameOnHost(t, h, closure)
	t.Logf("%d of %d paths were on the host\n%s", len(closure)-len(invalid), len(closure), out)
}

// TestCopySSHErrors checks that ssh's own failure (nobody listens on the
// port) is reported as ssh's, whichever way the copy goes.
func TestCopySSHErrors(t *testing.T) {
	root, _ := copyClosure(t, "ssh-errors")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	getenv := func(k string) string {
		if k == "NIX_SSHOPTS" {
			return "-F /dev/null -o BatchMode=yes -p " + port
		}
		return os.Getenv(k)
	}
	want := "error: cannot connect to 'root@127.0.0.1'; ssh said: ssh: connect to host 127.0.0.1 port " + port + ": Connection refused"
	for _, args := range [][]string{
		{"copy", "--to", "root@127.0.0.1", root},
		{"copy", "--from", "root@127.0.0.1", root},
		{"copy", "--from", "--include-outputs", "root@127.0.0.1", root},
	} {
		_, errOut, code := runWithEnv(t, getenv, args...)
		if code != 1 || !strings.Contains(errOut, want) || strings.Contains(errOut, "remote said") {
			t.Errorf("%v: exit %d\n%s", args, code, errOut)
		}
	}
}

// deltaClosure builds store/copy's delta fixture (four paths whose files
// are equal from one salt to another but for the store paths they name)
// and returns its root and closure.
func deltaClosure(t *testing.T, salt string) (string, []string) {
	t.Helper()
	return buildFixture(t, "delta.nix", salt)
}

// TestCopyDelta runs nbuild copy as a user updating a board would: the
// first copy finds nothing to start from; after a mass rebuild, the nbuild
// binary the host keeps in its cache assembles every path from its
// predecessor (-v says so); --delta off and nix-copy-closure by name
// copy as before.
func TestCopyDelta(t *testing.T) {
	salt := uniqueSalt(t)
	var roots [4]string
	var closures [4][]string
	for i := range roots {
		roots[i], closures[i] = deltaClosure(t, fmt.Sprint(salt, i))
	}
	h := testhost.New(t, testhost.Options{})
	nbuild, ncc := buildNbuild(t)
	run := func(prog string, args ...string) string {
		t.Helper()
		cmd := exec.Command(prog, args...)
		cmd.Env = h.Env()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(prog), strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := run(nbuild, "copy", "-v", "--to", h.Addr, roots[0])
	if !strings.Contains(out, "delta: not used: no likely predecessors on the remote") {
		t.Errorf("first copy:\n%s", out)
	}
	sameOnHost(t, h, closures[0])

	// The binary a previous copy would have left in the host's cache.
	data, err := os.ReadFile(nbuild)
	if err != nil {
		t.Fatal(err)
	}
	dir := fmt.Sprintf("$HOME/.cache/nbuild/bin/%x", sha256.Sum256(data))
	h.MustRun("sh", "-c", "mkdir -p "+dir+" && cp "+nbuild+" "+dir+"/nbuild")
	out = run(nbuild, "copy", "-v", h.Addr, roots[1])
	if !strings.Contains(out, "delta: 4 of 4 paths had a predecessor on "+h.Addr) || !strings.Contains(out, "nbuild on the host: cached") {
		t.Errorf("mass rebuild:\n%s", out)
	}
	sameOnHost(t, h, closures[1])

	out = run(nbuild, "copy", "-v", "--delta", "off", h.Addr, roots[2])
	if strings.Contains(out, "delta:") {
		t.Errorf("--delta off:\n%s", out)
	}
	sameOnHost(t, h, closures[2])

	if out = run(ncc, "--to", h.Addr, roots[3]); !strings.HasPrefix(out, "copying 4 paths...\n") || strings.Count(out, "copying path ") != 4 {
		t.Errorf("nix-copy-closure:\n%s", out)
	}
	sameOnHost(t, h, closures[3])
}
