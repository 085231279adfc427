package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store/storetest"
	"github.com/nbuild/nbuild/store/testhost"
)

// nccResult is what one run of a nix-copy-closure printed and returned.
type nccResult struct {
	code           int
	stdout, stderr string
}

// noNetworkSSH makes ssh fail at once without looking a name up: the
// usage cases below that get as far as ssh (a forgotten host taken for
// one) reach nothing, under either program.
const noNetworkSSH = "-F /dev/null -o BatchMode=yes -o ProxyCommand=false"

// realNixCopyClosure gates a test on Nix's nix-copy-closure (and ssh and
// man, which it runs) and returns its path.
func realNixCopyClosure(t *testing.T) string {
	t.Helper()
	storetest.RequireNix(t)
	storetest.RequireTools(t, "nix-copy-closure", "ssh", "man")
	p, err := exec.LookPath("nix-copy-closure")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runProgram runs a nix-copy-closure binary with argv[0] name and env.
func runProgram(t *testing.T, path, name string, env []string, args ...string) nccResult {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Args[0] = name
	cmd.Env = env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return nccResult{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

func envWith(kv ...string) []string {
	env := kv
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "NIX_SSHOPTS=") {
			env = append(env, e)
		}
	}
	return env
}

// TestNixCopyClosureUsage runs each command line through Nix 2.8's
// nix-copy-closure and through nbuild as nix-copy-closure (in-process),
// and wants the same exit status, stdout and stderr: every flag 2.8
// takes, its own and the inherited ones, their warnings, and the usage
// mistakes (no host, a path taken for the host, an unknown flag taken
// for the host, a flag without its argument).
func TestNixCopyClosureUsage(t *testing.T) {
	real := realNixCopyClosure(t)
	env := envWith("NIX_SSHOPTS=" + noNetworkSSH)
	getenv := func(k string) string {
		if k == "NIX_SSHOPTS" {
			return noNetworkSSH
		}
		return os.Getenv(k)
	}
	for _, line := range []string{
		"", "--to", "--from", "--gzip", "--xz", "--bzip2", "--show-progress", "--dry-run",
		"--include-outputs", "-s", "--use-substitutes", "--version", "--version -v", "--help",
		"--option", "--option foo", "--option foo bar", "--option foo bar --xz --option baz 1",
		"--option connect-timeout abc", "--option show-trace maybe", "--option build-cores 2",
		"--option extra-substituters x", "--option extra-foo x", "--option experimental-features foo",
		"--log-format bogus", "--log-format raw", "--log-format", "--show-trace", "--no-show-trace",
		"-v", "-vvvv", "--quiet", "--debug", "--bogus", "--zstd", "-x", "-", "-- -h", "-s -- --gzip",
		"-j", "-j x", "-j4", "-vs", "-sv", "--max-jobs abc", "--max-jobs -1", "--max-jobs auto",
		"--cores abc", "--cores 2", "--timeout 5k", "--timeout x5", "--max-silent-time", "--connect-timeout abc",
		"--connect-timeout -1", "--builders", "--sandbox", "--no-sandbox", "--relaxed-sandbox",
		"--keep-going", "-k", "-K", "-Q", "--no-build-output", "--keep-failed", "--no-keep-failed",
		"--fallback", "--readonly-mode", "--no-gc-warning", "--store", "--extra-substituters x",
		"--extra-extra-platforms x", "--experimental-features foo", "--extra-experimental-features nix-command",
		"--build-cores 3",
		// The host forgotten: the path is taken for it, and ssh fails.
		"/nix/store/00000000000000000000000000000000-x",
		"--to -v /nix/store/00000000000000000000000000000000-x",
		// The host is checked before the paths, the paths before ssh.
		"--to --bogus /tmp", "--to somehost /tmp", "-- -h /tmp",
	} {
		args := strings.Fields(line)
		want := runProgram(t, real, "nix-copy-closure", env, args...)
		var stdout, stderr strings.Builder
		code := runNixCopyClosure(context.Background(),
			&cmdEnv{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: getenv}, "nix-copy-closure", args)
		got := nccResult{code, stdout.String(), stderr.String()}
		// What ssh says of the refused proxy depends on timing.
		got.stderr, want.stderr = sshLines.ReplaceAllString(got.stderr, ""), sshLines.ReplaceAllString(want.stderr, "")
		if line == "--version -v" {
			// 2.8 adds its build's configuration; nbuild names itself.
			got.stdout, want.stdout = firstLine(got.stdout), firstLine(want.stdout)
		}
		if got != want {
			t.Errorf("nix-copy-closure %s:\nNix 2.8: exit %d\n%s%s\nnbuild:  exit %d\n%s%s",
				line, want.code, want.stdout, want.stderr, got.code, got.stdout, got.stderr)
		}
	}
}

// sshLines are ssh's messages when its ProxyCommand fails.
var sshLines = regexp.MustCompile(`(?m)^.*(UNKNOWN port 65535|kex_exchange_identification).*\n`)

func firstLine(s string) string { return strings.SplitAfter(s, "\n")[0] }

// buildNbuild builds nbuild into a temporary directory and returns it and
// a symlink to it named nix-copy-closure.
func buildNbuild(t *testing.T) (nbuild, ncc string) {
	t.Helper()
	storetest.RequireTools(t, "go")
	dir := t.TempDir()
	nbuild = filepath.Join(dir, "nbuild")
	if out, err := exec.Command("go", "build", "-o", nbuild, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ncc = filepath.Join(dir, "nix-copy-closure")
	if err := os.Symlink("nbuild", ncc); err != nil {
		t.Fatal(err)
	}
	return nbuild, ncc
}

// TestNixCopyClosureCopies copies to and from a real test host with Nix
// 2.8's nix-copy-closure and with nbuild run through a symlink named
// nix-copy-closure, one command line after the other with the host
// reset in between, and wants the same exit status and output and the
// same paths valid on the host with equal hashes.
func TestNixCopyClosureCopies(t *testing.T) {
	real := realNixCopyClosure(t)
	root, closure := copyClosure(t, uniqueSalt(t))
	// No substituters there: -s asks the host's, and this machine has no
	// network to reach cache.nixos.org.
	h := testhost.New(t, testhost.Options{NixConf: "substituters =\n"})
	_, ncc := buildNbuild(t)
	env := h.Env()
	link := filepath.Join(t.TempDir(), "result")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	// Paths that only the host has, for --from.
	remoteRoot, remoteClosure := hostOnlyClosure(t, h)
	resetHost := func() {
		h.MustRun("sh", "-c", "nix-store --delete "+strings.Join(reversed(closure), " ")+" >/dev/null 2>&1 || true")
	}
	resetLocal := func() {
		exec.Command("nix-store", append([]string{"--delete"}, reversed(remoteClosure)...)...).Run()
		for _, p := range remoteClosure {
			if exec.Command("nix-store", "--check-validity", p).Run() == nil {
				t.Fatalf("%s is still valid locally", p)
			}
		}
	}
	for _, line := range []string{
		"--to HOST ROOT",
		"HOST LINK",
		"--gzip --to HOST ROOT",
		"--xz HOST ROOT",
		"--bzip2 HOST ROOT",
		"--show-progress HOST ROOT",
		"--dry-run HOST ROOT",
		"--include-outputs HOST ROOT",
		"-s HOST ROOT",
		"--use-substitutes HOST ROOT",
		"-v HOST ROOT",
		"--quiet HOST ROOT",
		"--option connect-timeout 5 --option foo bar HOST ROOT",
		"--log-format raw --show-trace -j 4 HOST ROOT",
		"HOST",
		"--from HOST REMOTE",
		"--from --gzip HOST REMOTE",
	} {
		var args []string
		for _, a := range strings.Fields(line) {
			switch a {
			case "HOST":
				a = h.Addr
			case "ROOT":
				a = root
			case "LINK":
				a = link
			case "REMOTE":
				a = remoteRoot
			}
			args = append(args, a)
		}
		from := strings.Contains(line, "--from")
		run := func(path string) (nccResult, string) {
			resetHost()
			if from {
				resetLocal()
			}
			res := runProgram(t, path, path, env, args...)
			// The second, nothing to do, as well.
			again := runProgram(t, path, path, env, args...)
			res.stdout += again.stdout
			res.stderr += again.stderr
			if again.code != 0 {
				res.code = again.code
			}
			if from {
				return res, nixLocal(t, "-q", "--hash", remoteRoot)
			}
			if !strings.Contains(line, "ROOT") && !strings.Contains(line, "LINK") {
				return res, ""
			}
			return res, h.MustRun("nix-store", "-q", "--hash", root)
		}
		want, wantHash := run(real)
		got, gotHash := run(ncc)
		if got != want || gotHash != wantHash {
			t.Errorf("nix-copy-closure %s:\nNix 2.8: exit %d, root hash %q\n%s%s\nnbuild:  exit %d, root hash %q\n%s%s",
				line, want.code, wantHash, want.stdout, want.stderr, got.code, gotHash, got.stdout, got.stderr)
		}
		if from {
			for _, p := range remoteClosure {
				nixLocal(t, "--verify-path", p)
			}
		} else if strings.Contains(line, "ROOT") || strings.Contains(line, "LINK") {
			sameOnHost(t, h, closure)
		}
	}

	// -vv and up pass -v to ssh, whose debug lines differ from run to run.
	resetHost()
	res := runProgram(t, ncc, ncc, env, "-vv", h.Addr, root)
	if res.code != 0 || !strings.Contains(res.stderr, "debug1: ") || !strings.Contains(res.stderr, "copying 5 paths...\n") {
		t.Errorf("-vv: exit %d\n%s", res.code, res.stderr)
	}
}

// hostOnlyClosure builds a chain of three paths on h (not locally) and
// returns its root and closure.
func hostOnlyClosure(t *testing.T, h *testhost.Host) (string, []string) {
	t.Helper()
	expr := filepath.Join(h.Dir, "remote.nix")
	if err := os.WriteFile(expr, []byte(`{ salt }: let
  mk = name: dep: derivation { inherit name dep salt; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" "echo $salt $dep > $out" ]; };
in mk "ncc-from-c" (mk "ncc-from-b" (mk "ncc-from-a" ""))`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := strings.TrimSpace(h.MustRun("nix-build", "--option", "substituters", "", "--no-out-link", expr, "--argstr", "salt", uniqueSalt(t)))
	closure := strings.Fields(h.MustRun("nix-store", "-qR", out))
	if len(closure) != 3 {
		t.Fatalf("closure of %s: %v", out, closure)
	}
	return out, closure
}
