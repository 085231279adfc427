package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/nbuild/nbuild/store/storetest"
)

// saltedPlan writes a copy of testdata/nix/plan.nix whose derivations all
// carry salt, so a test builds fresh paths that no earlier run made.
func saltedPlan(t *testing.T, salt string) string {
	t.Helper()
	src, err := os.ReadFile("../../testdata/nix/plan.nix")
	if err != nil {
		t.Fatal(err)
	}
	const anchor = "inherit name system outputs deps sleep;"
	if !strings.Contains(string(src), anchor) {
		t.Fatalf("plan.nix no longer has %q to salt", anchor)
	}
	s := strings.Replace(string(src), anchor, anchor+` salt = "`+salt+`";`, 1)
	// Dotted files in the same directory keep builtins.toFile the same.
	f := filepath.Join(t.TempDir(), "plan.nix")
	if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func instantiateLocal(t *testing.T, file string, attrs ...string) []string {
	t.Helper()
	args := []string{file}
	for _, a := range attrs {
		args = append(args, "-A", a)
	}
	out, err := exec.Command("nix-instantiate", args...).Output()
	if err != nil {
		t.Fatalf("nix-instantiate %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

func nixLocal(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("nix-store", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("nix-store %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func buildArgs(t *testing.T, extra ...string) []string {
	// No network here: without substituters the daemon does not wait for
	// cache.nixos.org to time out on every query.
	return append([]string{"build", "--nix-conf", "testdata/nix.conf", "--cache-dir", t.TempDir(), "-Q", "--option", "substituters", ""}, extra...)
}

func salt(t *testing.T) string { return fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano()) }

// TestBuildLocalMatchesNixBuild builds the plan graph through the local
// daemon with nbuild and a second copy with plain nix-build, and requires
// the same output contents (NAR hashes) for every output of the closure.
func TestBuildLocalMatchesNixBuild(t *testing.T) {
	storetest.RequireDaemon(t)
	mine := instantiateLocal(t, saltedPlan(t, salt(t)+"-nbuild"), "app")[0]
	theirs := saltedPlan(t, salt(t)+"-nix")

	out, errOut, code := run(t, buildArgs(t, mine)...)
	if code != 0 {
		t.Fatalf("nbuild build: exit %d\n%s", code, errOut)
	}
	appOut := nixLocal(t, "-q", "--outputs", mine)
	if strings.TrimSpace(out) != appOut {
		t.Errorf("printed %q, want the root's output %q", out, appOut)
	}
	ref := exec.Command("nix-build", "--no-out-link", theirs, "-A", "app")
	if b, err := ref.CombinedOutput(); err != nil {
		t.Fatalf("nix-build: %v\n%s", err, b)
	}
	theirDrv := instantiateLocal(t, theirs, "app")[0]
	hashes := func(drv string) map[string]string {
		m := map[string]string{}
		for _, d := range strings.Fields(nixLocal(t, "-qR", drv)) {
			if !strings.HasSuffix(d, ".drv") {
				continue
			}
			for _, o := range strings.Fields(nixLocal(t, "-q", "--outputs", d)) {
				nixLocal(t, "--verify-path", o)
				m[filepath.Base(o)[33:]] = nixLocal(t, "-q", "--hash", o)
			}
		}
		return m
	}
	got, want := hashes(mine), hashes(theirDrv)
	if len(got) != len(want) || len(got) < 8 {
		t.Fatalf("built %d outputs, nix-build %d", len(got), len(want))
	}
	for name, h := range want {
		if got[name] != h {
			t.Errorf("output %s: nbuild %s, nix-build %s", name, got[name], h)
		}
	}
	// A second run has nothing to build and says the same.
	out2, _, code := run(t, buildArgs(t, mine)...)
	if code != 0 || out2 != out {
		t.Errorf("rebuild: exit %d, printed %q", code, out2)
	}
}

const failExpr = `
let mk = name: script: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" script]; salt = "SALT"; };
    bad = mk "bad" "echo compiling; echo boom: the build broke >&2; exit 1";
    good = mk "good" "echo ok > $out";
in { top = mk "top" "echo ${bad} ${good} > $out"; inherit bad good; }
`

func TestBuildFailureAndKeepGoing(t *testing.T) {
	storetest.RequireDaemon(t)
	f := filepath.Join(t.TempDir(), "fail.nix")
	if err := os.WriteFile(f, []byte(strings.ReplaceAll(failExpr, "SALT", salt(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	drvs := instantiateLocal(t, f, "top", "good")
	top, good := drvs[0], drvs[1]
	goodOut := nixLocal(t, "-q", "--outputs", good)

	// One local slot and --keep-going: bad fails, good is still built.
	_, errOut, code := run(t, buildArgs(t, "-j", "1", "--keep-going", top)...)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, errOut)
	}
	if !strings.Contains(errOut, "bad.drv") || !strings.Contains(errOut, "boom: the build broke") {
		t.Errorf("failure does not name the derivation and its log tail:\n%s", errOut)
	}
	// With --keep-going the independent sibling was built.
	if _, err := exec.Command("nix-store", "--verify-path", goodOut).CombinedOutput(); err != nil {
		t.Errorf("keep-going did not build %s", goodOut)
	}
	// Only bad failed: top, which needs it, is skipped, not reported as
	// failed itself.
	if strings.Contains(errOut, "-top.drv") || !strings.Contains(errOut, "1 dependent(s) skipped") {
		t.Errorf("top reported as failed, or not as skipped:\n%s", errOut)
	}
}

func TestBuildRefusesUnbuildable(t *testing.T) {
	storetest.RequireDaemon(t)
	plan := saltedPlan(t, salt(t))
	drvs := instantiateLocal(t, plan, "other", "lib-a")
	libA := nixLocal(t, "-q", "--outputs", drvs[1])
	_, errOut, code := run(t, buildArgs(t, drvs[0])...)
	if code != 1 || !strings.Contains(errOut, "no builder for system aarch64-linux") || !strings.Contains(errOut, "nothing was built") {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if _, err := exec.Command("nix-store", "--verify-path", libA).CombinedOutput(); err == nil {
		t.Errorf("%s was built although the plan was refused", libA)
	}
	// --dry-run still shows the plan of what can be built, with the
	// estimate per builder, and exits 1.
	out, errOut, code := run(t, buildArgs(t, "--dry-run", drvs[0])...)
	if code != 1 || !strings.Contains(errOut, "no builder for system aarch64-linux") {
		t.Errorf("dry run: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"to build", "estimated time on these builders", "  local: 3 build(s)", "defaulted"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	// --keep-going builds what does not depend on it, and exits 1.
	_, errOut, code = run(t, buildArgs(t, "--keep-going", drvs[0])...)
	if code != 1 {
		t.Errorf("--keep-going: exit %d, want 1\n%s", code, errOut)
	}
	if out, err := exec.Command("nix-store", "--verify-path", libA).CombinedOutput(); err != nil {
		t.Errorf("--keep-going did not build %s, which does not depend on the unbuildable derivation: %s", libA, out)
	}
}

func TestBuildDryRun(t *testing.T) {
	storetest.RequireDaemon(t)
	drv := instantiateLocal(t, saltedPlan(t, salt(t)), "app")[0]
	tl := filepath.Join(t.TempDir(), "plan.svg")
	out, errOut, code := run(t, buildArgs(t, "--dry-run", "--timeline", tl, drv)...)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if !strings.Contains(out, "estimated time on these builders") || !strings.Contains(out, "x86_64-linux") {
		t.Errorf("dry run output:\n%s", out)
	}
	if svg, err := os.ReadFile(tl); err != nil || !strings.HasPrefix(string(svg), "<svg") && !strings.HasPrefix(string(svg), "<?xml") {
		t.Errorf("timeline: %v %.80q", err, svg)
	}
	if _, err := exec.Command("nix-store", "--verify-path", nixLocal(t, "-q", "--outputs", drv)).CombinedOutput(); err == nil {
		t.Errorf("dry run built the root")
	}
}

// TestBuildQuietInPipe builds with progress on (no -Q) and stderr a
// pipe: no status line, no terminal escapes, nothing at all on success.
func TestBuildQuietInPipe(t *testing.T) {
	storetest.RequireDaemon(t)
	d := instantiateLocal(t, saltedPlan(t, salt(t)), "app")[0]
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(pr)
		got <- string(b)
	}()
	var stdout strings.Builder
	env := &cmdEnv{stdin: strings.NewReader(""), stdout: &stdout, stderr: pw, getenv: func(string) string { return "" }}
	args := withProgress(buildArgs(t, d))
	code := runMain(context.Background(), env, args)
	pw.Close()
	errOut := <-got
	pr.Close()
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if errOut != "" {
		t.Errorf("a successful build wrote to a piped stderr: %q", errOut)
	}
	if strings.TrimSpace(stdout.String()) != nixLocal(t, "-q", "--outputs", d) {
		t.Errorf("stdout %q is not the root's output", stdout.String())
	}
}

// openPTY returns a pseudo-terminal's controlling and terminal ends.
func openPTY(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, ptmx.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatalf("unlocking the pty: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, ptmx.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatalf("pty number: %v", e)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return ptmx, tty
}

// TestBuildFailureOnTerminal runs a failing --keep-going build with
// stderr a terminal: the failure and its log's last lines show as it
// happens, above the status line.
func TestBuildFailureOnTerminal(t *testing.T) {
	storetest.RequireDaemon(t)
	f := filepath.Join(t.TempDir(), "fail.nix")
	if err := os.WriteFile(f, []byte(strings.ReplaceAll(failExpr, "SALT", salt(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	top := instantiateLocal(t, f, "top")[0]
	ptmx, tty := openPTY(t)
	defer ptmx.Close()
	got := make(chan string, 1)
	go func() {
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got <- b.String()
	}()
	var stdout strings.Builder
	env := &cmdEnv{stdin: strings.NewReader(""), stdout: &stdout, stderr: tty, getenv: func(string) string { return "" }}
	args := withProgress(buildArgs(t, "-j", "1", "--keep-going", top))
	code := runMain(context.Background(), env, args)
	tty.Close() // the reader then gets EIO
	out := <-got
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	i := strings.Index(out, "error: bad failed on local: ")
	if i < 0 {
		t.Fatalf("no failure line on the terminal:\n%q", out)
	}
	if !strings.Contains(out[i:], "boom: the build broke") {
		t.Errorf("the failure line lacks the log's last lines:\n%q", out)
	}
	if strings.Count(out, "boom: the build broke") != 2 {
		t.Errorf("want the log tail once when it fails and once in the final error:\n%q", out)
	}
}

// withProgress drops buildArgs' -Q.
func withProgress(args []string) []string {
	var out []string
	for _, a := range args {
		if a != "-Q" {
			out = append(out, a)
		}
	}
	return out
}
