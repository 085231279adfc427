package testhost

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func sshCommand(ctx context.Context, h *Host, port int, remote ...string) *exec.Cmd {
	args := append([]string{h.Addr, "-x", "-a"}, h.SSHArgsPort(port)...)
	args = append(args, "--")
	args = append(args, remote...)
	return exec.CommandContext(ctx, "ssh", args...)
}

// addFile adds a small file with the given content to a store by running
// nix-store --add through run, and returns the store path.
func addFile(t *testing.T, dir, content string, run func(args ...string) (string, error)) string {
	t.Helper()
	f := filepath.Join(dir, "testhost-isolation")
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run("nix-store", "--add", f)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func runLocal(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).Output()
	return string(out), err
}

// TestStoreIsSeparate proves the host's /nix is its own: a path added on
// the host is not valid on the machine and vice versa, and ssh sessions
// see the host's store.
func TestStoreIsSeparate(t *testing.T) {
	h := New(t, Options{})

	hostPath := addFile(t, t.TempDir(), "only on the test host\n", h.Run)
	if !strings.HasPrefix(hostPath, "/nix/store/") {
		t.Fatalf("nix-store --add on host printed %q", hostPath)
	}
	if _, err := os.Stat(filepath.Join(h.StoreDir(), filepath.Base(hostPath))); err != nil {
		t.Errorf("host path not in the host's scratch store: %v", err)
	}
	if _, err := os.Stat(hostPath); err == nil {
		t.Errorf("%s appeared in the machine's /nix/store", hostPath)
	}
	if err := exec.Command("nix-store", "--check-validity", hostPath).Run(); err == nil {
		t.Errorf("%s added on the host is valid on the machine", hostPath)
	}

	localPath := addFile(t, t.TempDir(), "only on the machine (nbuild testhost)\n", runLocal)
	if _, err := h.Run("nix-store", "--check-validity", localPath); err == nil {
		t.Errorf("%s added on the machine is valid on the host", localPath)
	}
	if _, err := h.Run("nix-store", "--check-validity", hostPath); err != nil {
		t.Errorf("host path not valid on the host: %v", err)
	}

	// An ssh session runs inside the host's namespace.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range []struct {
		path  string
		valid bool
	}{{hostPath, true}, {localPath, false}} {
		cmd := sshCommand(ctx, h, h.Port, "nix-store", "--check-validity", c.path)
		out, err := cmd.CombinedOutput()
		if (err == nil) != c.valid {
			t.Errorf("over ssh, --check-validity %s: err=%v (want valid=%v): %s\nsshd log:\n%s", c.path, err, c.valid, out, h.SSHLog())
		}
	}
}

func TestDaemonInHost(t *testing.T) {
	h := New(t, Options{Daemon: true})
	if fi, err := os.Stat(h.DaemonSocket()); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("no daemon socket at %s: %v", h.DaemonSocket(), err)
	}
	p := addFile(t, t.TempDir(), "through the host's daemon\n", func(args ...string) (string, error) {
		return h.Run(append([]string{"env", "NIX_REMOTE=daemon"}, args...)...)
	})
	if _, err := h.Run("nix-store", "--check-validity", p); err != nil {
		t.Errorf("path added through the host daemon is not valid in the host store: %v", err)
	}
	if _, err := os.Stat(p); err == nil {
		t.Errorf("%s leaked into the machine's store", p)
	}
}

// TestRelay sends data through a shaped relay and back (cat), then cuts
// the link mid-stream and checks ssh fails instead of hanging.
func TestRelay(t *testing.T) {
	h := New(t, Options{})
	r := NewRelay(t, h.HostAddr(), RelayOptions{RateBytesPerSec: 20 << 20, Delay: 5 * time.Millisecond})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	payload := bytes.Repeat([]byte("nbuild relay test\n"), 50000) // 900 KB
	cmd := sshCommand(ctx, h, r.Port, "cat")
	cmd.Stdin = bytes.NewReader(payload)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ssh cat through relay: %v: %s", err, stderr.String())
	}
	if !bytes.Equal(out, payload) {
		t.Fatalf("relay corrupted data: got %d bytes, want %d", len(out), len(payload))
	}
	if r.Relayed() < int64(2*len(payload)) {
		t.Errorf("relay counted %d bytes, want at least %d", r.Relayed(), 2*len(payload))
	}

	// Cut after 300 KB: ssh must fail, not hang.
	r.CutAfter(300 << 10)
	cmd = sshCommand(ctx, h, r.Port, "cat")
	cmd.Stdin = bytes.NewReader(payload)
	cmd.Stdout = io.Discard
	err = cmd.Run()
	if err == nil {
		t.Fatal("ssh through a cut link succeeded")
	}
	if ctx.Err() != nil {
		t.Fatal("ssh through a cut link hung")
	}

	// The relay accepts new connections after a cut.
	cmd = sshCommand(ctx, h, r.Port, "true")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ssh after cut: %v: %s", err, out)
	}

	r.Kill()
	cmd = sshCommand(ctx, h, r.Port, "true")
	if err := cmd.Run(); err == nil {
		t.Fatal("ssh through a killed relay succeeded")
	}
}

// TestRelayShaping checks the rate and delay the benchmarks rely on, as
// lower bounds only (a loaded machine makes everything slower, never
// faster): an echo through ssh cat crosses the delay twice, and a payload
// crosses the rate limit, after the login, whose cost is not counted.
func TestRelayShaping(t *testing.T) {
	const (
		rate  = 4 << 20
		delay = 25 * time.Millisecond
		size  = 2 << 20
	)
	h := New(t, Options{})
	r := NewRelay(t, h.HostAddr(), RelayOptions{RateBytesPerSec: rate, Delay: delay})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := sshCommand(ctx, h, r.Port, "cat")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer in.Close()
	echo := func(line string) time.Duration {
		t.Helper()
		start := time.Now()
		if _, err := io.WriteString(in, line); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(line))
		if _, err := io.ReadFull(out, got); err != nil || string(got) != line {
			t.Fatalf("echo %q: got %q, %v", line, got, err)
		}
		return time.Since(start)
	}
	echo("login\n") // the session is up once this comes back
	if rtt := echo("ping\n"); rtt < 2*delay {
		t.Errorf("an echo took %v, less than the relay's delay both ways (%v)", rtt, 2*delay)
	}
	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	start := time.Now()
	go func() { in.Write(payload) }()
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(out, got); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("payload through the relay: %v", err)
	}
	if took, least := time.Since(start), time.Duration(size)*time.Second/rate; took < least {
		t.Errorf("%d bytes passed in %v, faster than the relay's rate allows (%v)", size, took, least)
	}
}

// TestKillAndTeardown checks Kill stops sshd and sessions but keeps the
// store, and teardown leaves no process in the namespace.
func TestKillAndTeardown(t *testing.T) {
	h := New(t, Options{Daemon: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A session that would run for a long time.
	sess := sshCommand(ctx, h, h.Port, "sleep", "600")
	if err := sess.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the sleep runs in the host.
	deadline := time.Now().Add(30 * time.Second)
	for !hasProcess(h, "sleep 600") {
		if time.Now().After(deadline) {
			t.Fatalf("remote sleep never started; sshd log:\n%s", h.SSHLog())
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.KillSessions()
	if err := sess.Wait(); err == nil {
		t.Error("ssh session survived KillSessions")
	}
	if out, err := sshCommand(ctx, h, h.Port, "true").CombinedOutput(); err != nil {
		t.Fatalf("sshd gone after KillSessions: %v: %s", err, out)
	}

	h.Kill()
	if err := sshCommand(ctx, h, h.Port, "true").Run(); err == nil {
		t.Error("ssh works after Kill")
	}
	if _, err := h.Run("nix-store", "--verify"); err != nil {
		t.Errorf("Run after Kill: %v", err)
	}
	if n := len(h.namespacePids()); n != 1 {
		t.Errorf("%d processes in the host after Kill, want only the anchor", n)
	}

	anchor := h.anchor.Process.Pid
	if err := h.killNamespace(true); err != nil {
		t.Fatal(err)
	}
	if n := len(h.namespacePids()); n != 0 {
		t.Errorf("%d processes in the host after teardown", n)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(anchor) + "/ns/mnt"); err == nil {
		t.Errorf("anchor %d still alive", anchor)
	}
	h.teardown()
	if h.anchor != nil {
		t.Error("teardown did not finish")
	}
}

func hasProcess(h *Host, cmdline string) bool {
	for _, pid := range h.namespacePids() {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err == nil && strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ") == cmdline {
			return true
		}
	}
	return false
}

// TestUser logs in as Options.User: the session runs as that user inside
// the host, its Nix works through the host's daemon, which does not trust
// it, root still logs in as before, and the machine's /etc/passwd never
// learns the user.
func TestUser(t *testing.T) {
	passwdBefore, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	h := New(t, Options{User: "nbuildtest"})
	if h.UserAddr != "nbuildtest@127.0.0.1" || h.UID < firstUID {
		t.Fatalf("UserAddr %q, UID %d", h.UserAddr, h.UID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	user := func(remote ...string) (string, error) {
		args := append([]string{h.UserAddr, "-x", "-a"}, h.SSHArgs()...)
		args = append(append(args, "--"), remote...)
		out, err := exec.CommandContext(ctx, "ssh", args...).CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("ssh %s %v: %w: %s\nsshd log:\n%s", h.UserAddr, remote, err, out, h.SSHLog())
		}
		return string(out), nil
	}
	out, err := user("id", "-u", "-n")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out); got != "nbuildtest" {
		t.Errorf("logged in as %q", got)
	}
	if out, _ := user("id", "-u"); strings.TrimSpace(out) != strconv.Itoa(h.UID) {
		t.Errorf("uid %q, want %d", out, h.UID)
	}
	if out, err := sshCommand(ctx, h, h.Port, "id", "-u").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Errorf("root login: %v: %q", err, out)
	}

	// The user's Nix sees the host's store, through the daemon.
	hostPath := addFile(t, t.TempDir(), "only on the test host, for its user\n", h.Run)
	if _, err := user("nix-store", "--check-validity", hostPath); err != nil {
		t.Errorf("host path not valid for the user: %v", err)
	}
	// The daemon logs each connection with its peer, and whether it trusts it.
	log, err := os.ReadFile(filepath.Join(h.Dir, "ssh", "nix-daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	var seen bool
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "user nbuildtest") {
			seen = true
			if strings.Contains(line, "trusted") {
				t.Errorf("the daemon trusts the user: %s", line)
			}
		}
	}
	if !seen {
		t.Errorf("the daemon saw no connection from the user; its log:\n%s", log)
	}

	passwdAfter, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(passwdBefore, passwdAfter) || bytes.Contains(passwdAfter, []byte("nbuildtest")) {
		t.Error("the machine's /etc/passwd changed")
	}
	if _, err := h.Run("grep", "-q", "^nbuildtest:", "/etc/passwd"); err != nil {
		t.Errorf("the host's /etc/passwd lacks the user: %v", err)
	}
}
