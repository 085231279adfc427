package ssh_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store/ssh"
	"github.com/nbuild/nbuild/store/testhost"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestArgs(t *testing.T) {
	tests := []struct {
		name    string
		host    string
		cmd     []string
		opts    ssh.Options
		want    []string
		wantErr error
	}{
		{
			name: "plain",
			host: "builder@example",
			cmd:  []string{"nix-store", "--serve", "--write"},
			opts: ssh.Options{Getenv: env(nil)},
			want: []string{"builder@example", "-x", "-a", "--", "nix-store --serve --write"},
		},
		{
			name: "NIX_SSHOPTS split on whitespace, then our options in Nix's order",
			host: "h",
			cmd:  []string{"nix-daemon", "--stdio"},
			opts: ssh.Options{
				Getenv:         env(map[string]string{"NIX_SSHOPTS": "  -p 2222\t-o  ControlMaster=auto "}),
				ExtraArgs:      []string{"-o", "BatchMode=yes"},
				Port:           22,
				Identity:       "/k",
				KnownHostsFile: "/kh",
				Compress:       true,
				Verbose:        true,
			},
			want: []string{"h", "-x", "-a", "-p", "2222", "-o", "ControlMaster=auto", "-o", "BatchMode=yes",
				"-p", "22", "-i", "/k", "-oUserKnownHostsFile=/kh", "-C", "-v", "--", "nix-daemon --stdio"},
		},
		{
			name: "localhost is not special",
			host: "localhost",
			cmd:  []string{"true"},
			opts: ssh.Options{Getenv: env(nil)},
			want: []string{"localhost", "-x", "-a", "--", "true"},
		},
		{
			name: "remote words are quoted for the remote shell",
			host: "h",
			cmd:  []string{"nix-store", "--serve", "--store", "local?root=/a b", "it's"},
			opts: ssh.Options{Getenv: env(nil)},
			want: []string{"h", "-x", "-a", "--", `nix-store --serve --store 'local?root=/a b' 'it'\''s'`},
		},
		{name: "empty host", host: "", cmd: []string{"true"}, wantErr: ssh.ErrInvalidHost},
		{name: "host that is an option", host: "-oProxyCommand=evil", cmd: []string{"true"}, wantErr: ssh.ErrInvalidHost},
		{name: "no command", host: "h", opts: ssh.Options{Getenv: env(nil)}, wantErr: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ssh.Args(tt.host, tt.cmd, tt.opts)
			if tt.wantErr != nil || tt.want == nil {
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("Args = %q, %v; want error %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Args =\n %q\nwant\n %q", got, tt.want)
			}
		})
	}
}

func TestShellJoin(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{[]string{"a", "b-c", "/x/y.z", "k=v", "u@h:1,2%"}, "a b-c /x/y.z k=v u@h:1,2%"},
		{[]string{""}, "''"},
		{[]string{"$HOME", "a;b", "`x`", "*"}, "'$HOME' 'a;b' '`x`' '*'"},
		{[]string{"it's"}, `'it'\''s'`},
	}
	for _, tt := range tests {
		if got := ssh.ShellJoin(tt.in); got != tt.want {
			t.Errorf("ShellJoin(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func dial(t *testing.T, h *testhost.Host, opts ssh.Options, cmd ...string) *ssh.Conn {
	t.Helper()
	opts.Getenv = h.Getenv
	c, err := ssh.Dial(context.Background(), h.Addr, cmd, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestEcho runs cat on a test host: bytes written come back, and a
// clean end of session gives no error.
func TestEcho(t *testing.T) {
	h := testhost.New(t, testhost.Options{})
	var logs bytes.Buffer
	c := dial(t, h, ssh.Options{Stderr: &logs}, "sh", "-c", "echo started >&2; cat")
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	go func() {
		c.Write(payload)
		c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("got %d bytes back, want %d", len(got), len(payload))
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if tail := c.StderrTail(); tail != "started\n" {
		t.Errorf("StderrTail = %q", tail)
	}
	if logs.String() != "started\n" {
		t.Errorf("Options.Stderr got %q", logs.String())
	}
}

// TestRemoteFailure: the remote command prints why it fails and exits;
// the reader sees EOF and Wait/Close report the remote's stderr.
func TestRemoteFailure(t *testing.T) {
	h := testhost.New(t, testhost.Options{})
	c := dial(t, h, ssh.Options{}, "sh", "-c", "echo 'error: path is not valid' >&2; exit 3")
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("read: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := c.Wait(ctx)
	var se *ssh.Error
	if !errors.As(err, &se) {
		t.Fatalf("Wait = %v, want *ssh.Error", err)
	}
	if !strings.HasPrefix(err.Error(), "ssh to root@127.0.0.1: error: path is not valid") {
		t.Errorf("error = %q", err)
	}
	if c.Err() == nil {
		t.Error("Err() = nil after a failed exit")
	}
}

// TestClosedPort: nothing listens; the error says so.
func TestClosedPort(t *testing.T) {
	h := testhost.New(t, testhost.Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	c, err := ssh.Dial(context.Background(), h.Addr, []string{"true"}, ssh.Options{Getenv: h.GetenvPort(port)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n, err := c.Read(make([]byte, 8))
	if n != 0 || err != io.EOF {
		t.Fatalf("Read = %d, %v; want EOF", n, err)
	}
	if tail := c.StderrTail(); !strings.Contains(tail, "Connection refused") {
		t.Errorf("StderrTail = %q", tail)
	}
	err = c.Close()
	if err == nil || !strings.Contains(err.Error(), "ssh to root@127.0.0.1:") || !strings.Contains(err.Error(), "Connection refused") {
		t.Errorf("Close = %v", err)
	}
}

// TestCloseKillsHungSession: a remote that ignores EOF on stdin does not
// make Close hang: after CloseTimeout it kills our ssh.
func TestCloseKillsHungSession(t *testing.T) {
	h := testhost.New(t, testhost.Options{})
	c := dial(t, h, ssh.Options{CloseTimeout: 200 * time.Millisecond}, "sh", "-c", "echo up; exec sleep 600")
	if _, err := c.Read(make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close of a killed session = %v, want nil", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, ssh.ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, ssh.ErrClosed) {
		t.Errorf("Read after Close = %v, want ErrClosed", err)
	}
}

// TestKillUnblocksRead: a read blocked on a silent remote returns once
// the session is killed.
func TestKillUnblocksRead(t *testing.T) {
	h := testhost.New(t, testhost.Options{})
	c := dial(t, h, ssh.Options{}, "sleep", "600")
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	c.Kill()
	if err := <-done; err == nil {
		t.Error("Read after Kill returned no error")
	}
}

func TestDialCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ssh.Dial(ctx, "h", []string{"true"}, ssh.Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Dial with a canceled context = %v", err)
	}
}

// TestDaemonStdioOnHost: `nix-daemon --stdio` over ssh answers the worker
// protocol handshake from the test host (what ssh-ng:// stores use).
func TestDaemonStdioOnHost(t *testing.T) {
	h := testhost.New(t, testhost.Options{})
	c := dial(t, h, ssh.Options{}, "nix-daemon", "--stdio")
	magic1 := []byte{0x63, 0x78, 0x69, 0x6e, 0, 0, 0, 0} // "cxin"
	if _, err := c.Write(magic1); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 16)
	if _, err := io.ReadFull(c, reply); err != nil {
		t.Fatalf("reading the daemon's handshake: %v; stderr: %s", err, c.StderrTail())
	}
	if !bytes.Equal(reply[:8], []byte{0x6f, 0x69, 0x78, 0x64, 0, 0, 0, 0}) {
		t.Fatalf("daemon answered % x", reply)
	}
	if reply[9] != 1 {
		t.Errorf("worker protocol major %d, want 1", reply[9])
	}
}
