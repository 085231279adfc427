package ssh_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store/ssh"
	"github.com/nbuild/nbuild/store/testhost"
)

// logins counts the logins sshd accepted.
func logins(h *testhost.Host) int {
	return strings.Count(h.SSHLog(), "Accepted publickey")
}

// TestMasterSessionsShareOneLogin runs 12 sessions at once over one
// master: sshd sees one login.
func TestMasterSessionsShareOneLogin(t *testing.T) {
	h := testhost.New(t, testhost.Options{})
	m, err := ssh.NewMaster(h.Addr, ssh.Options{Getenv: h.Getenv})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(filepathOf(t, m))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := m.Dial(ctx, []string{"echo", "session", strconv.Itoa(i)})
			if err != nil {
				t.Error(err)
				return
			}
			out, err := io.ReadAll(c)
			if err != nil || string(out) != "session "+strconv.Itoa(i)+"\n" {
				t.Errorf("session %d: %q, %v", i, out, err)
			}
			if err := c.Close(); err != nil {
				t.Errorf("session %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if n := logins(h); n != 1 {
		t.Errorf("%d logins for 12 sessions, want 1\n%s", n, h.SSHLog())
	}
	if !m.Running() {
		t.Errorf("the master is not running after its sessions ended")
	}
	if err := m.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the master's directory %s survives Close: %v", dir, err)
	}
	if m.Running() {
		t.Errorf("the master runs after Close")
	}
}

// filepathOf finds the master's private directory: the one temporary
// directory whose control socket ssh created for m. It checks the mode.
func filepathOf(t *testing.T, m *ssh.Master) string {
	t.Helper()
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	socks, _ := filepath.Glob(filepath.Join(os.TempDir(), "nbuild-ssh-*", "ssh.sock"))
	for _, s := range socks {
		fi, err := os.Stat(filepath.Dir(s))
		if err != nil {
			continue
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %v, want 0700", filepath.Dir(s), fi.Mode().Perm())
		}
	}
	if len(socks) == 0 {
		t.Fatal("no control socket")
	}
	return socks[len(socks)-1]
}

// TestMasterRestartsAfterDeath: sessions after the master died (the host
// dropped every connection) log in again.
func TestMasterRestartsAfterDeath(t *testing.T) {
	h := testhost.New(t, testhost.Options{})
	m, err := ssh.NewMaster(h.Addr, ssh.Options{Getenv: h.Getenv})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	h.KillSessions() // the master's sshd process too
	// The master learns of its death when the connection drops, a moment
	// later; a session asked for before then goes through the dying
	// master and gets nothing (seen once in CI). What is tested is the
	// login again once it has died.
	for deadline := time.Now().Add(30 * time.Second); m.Running(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the master outlived its sshd session by 30 s")
		}
	}
	c, err := m.Dial(ctx, []string{"echo", "again"})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(c)
	c.Close()
	if string(out) != "again\n" {
		t.Errorf("after a restart: %q", out)
	}
}

// hostKeyOpts reaches the host as a builders line would: the only host
// key ssh knows is the line's (no known_hosts of the test host's), with
// strict checking. HostKeyAlias names the host as the known-hosts entry
// does, since the port is not 22.
func hostKeyOpts(h *testhost.Host, key string) ssh.Options {
	sshopts := strings.Join([]string{"-p", strconv.Itoa(h.Port), "-i", h.Key, "-o", "IdentitiesOnly=yes",
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "HostKeyAlias=127.0.0.1",
		"-o", "StrictHostKeyChecking=yes", "-o", "CheckHostIP=no", "-o", "BatchMode=yes"}, " ")
	return ssh.Options{PublicHostKey: key, Getenv: func(k string) string {
		if k == "NIX_SSHOPTS" {
			return sshopts
		}
		return os.Getenv(k)
	}}
}

func TestMasterPublicHostKey(t *testing.T) {
	h := testhost.New(t, testhost.Options{})
	pub, err := os.ReadFile(filepath.Join(h.Dir, "ssh", "host_ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	m, err := ssh.NewMaster(h.Addr, hostKeyOpts(h, base64.StdEncoding.EncodeToString(pub)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := m.Dial(ctx, []string{"echo", "trusted"})
	if err != nil {
		t.Fatalf("strict checking with the key from the builders line: %v", err)
	}
	out, _ := io.ReadAll(c)
	c.Close()
	if string(out) != "trusted\n" {
		t.Errorf("got %q", out)
	}

	other := filepath.Join(t.TempDir(), "other")
	if b, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, b)
	}
	wrong, err := os.ReadFile(other + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	bad, err := ssh.NewMaster(h.Addr, hostKeyOpts(h, base64.StdEncoding.EncodeToString(wrong)))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	_, err = bad.Dial(ctx, []string{"echo", "trusted"})
	var se *ssh.Error
	if !errors.As(err, &se) || !strings.Contains(se.Stderr, "Host key verification failed") {
		t.Fatalf("a wrong host key: %v, want ssh's host key verification failure", err)
	}
	if !strings.HasPrefix(err.Error(), "ssh to "+h.Addr+": ") {
		t.Errorf("the error is not attributed to ssh: %v", err)
	}
	t.Logf("wrong key: %v", err)

	if _, err := ssh.NewMaster(h.Addr, ssh.Options{PublicHostKey: "not base64!"}); !errors.Is(err, ssh.ErrHostKey) {
		t.Errorf("an invalid key: %v", err)
	}
}

func TestWriteKnownHosts(t *testing.T) {
	dir := t.TempDir()
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFoo comment\n"
	file, err := ssh.WriteKnownHosts(dir, "alice@box", base64.StdEncoding.EncodeToString([]byte(key)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(file)
	if want := "box ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFoo comment\n"; string(b) != want {
		t.Errorf("known hosts %q, want %q", b, want)
	}
	// As Nix: a newline inside the base64 is skipped, '=' ends it.
	if _, err := ssh.WriteKnownHosts(dir, "box", "c3NoLWVk\nMjU1MTk=junk"); err != nil {
		t.Errorf("lenient decoding: %v", err)
	}
}
