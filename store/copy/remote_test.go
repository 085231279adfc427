package copy_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/copy"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/ssh"
	"github.com/nbuild/nbuild/store/storetest"
	"github.com/nbuild/nbuild/store/testhost"
)

// buildClosure builds testdata/closure.nix with the local daemon and
// returns its root and closure (references first).
func buildClosure(t *testing.T, salt string) (store.Path, []*store.PathInfo) {
	t.Helper()
	return nixBuild(t, "testdata/closure.nix", "salt", salt)
}

// nixBuild builds a Nix file with the local daemon, with the given
// --argstr name and value pairs, and returns its root and closure
// (references first).
func nixBuild(t *testing.T, file string, args ...string) (store.Path, []*store.PathInfo) {
	t.Helper()
	storetest.RequireDaemon(t)
	cmd := []string{"--option", "substituters", "", "--no-out-link", file}
	for i := 0; i+1 < len(args); i += 2 {
		cmd = append(cmd, "--argstr", args[i], args[i+1])
	}
	out, err := exec.Command("nix-build", cmd...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("nix-build: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("nix-build: %v", err)
	}
	root := store.MustParsePath(strings.TrimSpace(string(out)))
	infos, err := copy.Closure(context.Background(), localConn(t), []store.Path{root})
	if err != nil {
		t.Fatal(err)
	}
	return root, infos
}

func localConn(t testing.TB) *daemon.Conn {
	t.Helper()
	c, err := daemon.Dial(context.Background(), storetest.DaemonSocket, daemon.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// boardEnv is h's environment for reaching it as "root@board" through
// ssh's HostName, as a real board's name would: auto compression does not
// see a loopback address there.
func boardEnv(h *testhost.Host) func(string) string {
	return func(key string) string {
		if key == "NIX_SSHOPTS" {
			return h.Getenv(key) + " -o HostName=127.0.0.1"
		}
		return h.Getenv(key)
	}
}

// checkSame asserts that every path of infos is valid on h with the same
// hash, references and deriver as locally, as nix-store reports them.
func checkSame(t *testing.T, h *testhost.Host, infos []*store.PathInfo) {
	t.Helper()
	for _, info := range infos {
		p := info.Path.String()
		if _, err := h.Run("nix-store", "--verify-path", p); err != nil {
			t.Errorf("remote verify-path %s: %v", p, err)
			continue
		}
		for _, q := range []string{"--hash", "--references", "--deriver"} {
			local, err := exec.Command("nix-store", "-q", q, p).Output()
			if err != nil {
				t.Fatalf("local nix-store -q %s %s: %v", q, p, err)
			}
			remote, err := h.Run("nix-store", "-q", q, p)
			if err != nil {
				t.Fatalf("remote nix-store -q %s %s: %v", q, p, err)
			}
			if string(local) != remote {
				t.Errorf("%s %s: local %q, remote %q", q, p, local, remote)
			}
		}
	}
}

// remoteValid returns which of infos are valid on h.
func remoteValid(t *testing.T, h *testhost.Host, infos []*store.PathInfo) []store.Path {
	t.Helper()
	args := []string{"nix-store", "--check-validity", "--print-invalid"}
	for _, info := range infos {
		args = append(args, info.Path.String())
	}
	out, err := h.Run(args...)
	if err != nil {
		t.Fatal(err)
	}
	invalid := strings.Fields(out)
	var valid []store.Path
	for _, info := range infos {
		if !slices.Contains(invalid, info.Path.String()) {
			valid = append(valid, info.Path)
		}
	}
	return valid
}

func TestToHost(t *testing.T) {
	_, infos := buildClosure(t, "tohost")
	h := testhost.New(t, testhost.Options{})
	board := boardEnv(h)
	for _, tc := range []struct {
		name, compress, want string
		noDaemon             bool
		board                bool
	}{
		// The closure's last path is 12 MiB of random bytes, which
		// auto stores rather than compresses.
		{name: "auto", compress: "auto", want: "zstd", board: true},
		{name: "auto-loopback", compress: "auto", want: "none"},
		{name: "zstd", compress: "zstd", want: "zstd"},
		{name: "xz", compress: "xz", want: "xz"},
		{name: "none", compress: "none", want: "none"},
		{name: "serve", compress: "auto", want: "none", noDaemon: true},
	} {
		addr, getenv := h.Addr, h.Getenv
		if tc.board {
			addr, getenv = "root@board", board
		}
		t.Run(tc.name, func(t *testing.T) {
			h.MustRun("sh", "-c", "nix-store --delete "+paths(infos)+" >/dev/null 2>&1 || true")
			if v := remoteValid(t, h, infos); len(v) != 0 {
				t.Fatalf("remote still holds %v", v)
			}
			// The first path is already there: only the rest is sent.
			first := copy.HostOptions{SSH: ssh.Options{Getenv: getenv}, Compress: tc.compress}
			res, err := copy.ToHost(context.Background(), addr, infos[:1], first)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Sent) != 1 {
				t.Fatalf("sent %d paths, want 1", len(res.Sent))
			}
			var last copy.Progress
			opts := copy.HostOptions{SSH: ssh.Options{Getenv: getenv}, Compress: tc.compress, NoDaemon: tc.noDaemon,
				Progress: func(p copy.Progress) { last = p }}
			res, err = copy.ToHost(context.Background(), addr, infos, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Sent) != len(infos)-1 || res.Compression != tc.want {
				t.Errorf("sent %d paths as %s, want %d as %s", len(res.Sent), res.Compression, len(infos)-1, tc.want)
			}
			if stored := res.StoredChunks > 0; stored != (tc.name == "auto") {
				t.Errorf("%d of %d chunks stored", res.StoredChunks, res.Chunks)
			}
			if last.Paths != len(infos)-1 || last.Bytes != last.TotalBytes {
				t.Errorf("last progress %+v", last)
			}
			checkSame(t, h, infos)
			// Nothing left to send: one session, nothing sent.
			res, err = copy.ToHost(context.Background(), addr, infos, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Sent) != 0 {
				t.Errorf("second copy sent %d paths", len(res.Sent))
			}
		})
	}
}

// TestToHostInterrupted cuts the link at several points of the transfer;
// afterwards no partial path may be valid on the remote, and a rerun sends
// exactly what is still missing.
func TestToHostInterrupted(t *testing.T) {
	_, infos := buildClosure(t, "interrupted")
	h := testhost.New(t, testhost.Options{})
	for _, tc := range []struct {
		name     string
		compress string
		cutAfter int64
	}{
		{"handshake", "none", 2 << 10},
		{"first-nar", "none", 1 << 20},
		{"middle", "none", 10 << 20},
		{"middle-zstd", "zstd", 600 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.MustRun("sh", "-c", "nix-store --delete "+paths(infos)+" >/dev/null 2>&1 || true")
			relay := testhost.NewRelay(t, h.HostAddr(), testhost.RelayOptions{RateBytesPerSec: 50 << 20})
			relay.CutAfter(tc.cutAfter)
			opts := copy.HostOptions{SSH: ssh.Options{Getenv: h.GetenvPort(relay.Port)}, Compress: tc.compress}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := copy.ToHost(ctx, h.Addr, infos, opts); err == nil {
				t.Fatalf("copy through a link cut after %d bytes succeeded", tc.cutAfter)
			}
			// The remote may still be working through bytes that arrived
			// before the cut: end it as a dropped session would be ended.
			h.KillSessions()
			// Whatever the remote holds must be complete and intact.
			before := remoteValid(t, h, infos)
			for _, p := range before {
				if _, err := h.Run("nix-store", "--verify-path", p.String()); err != nil {
					t.Errorf("partial path %s is valid: %v", p, err)
				}
			}
			res, err := copy.ToHost(ctx, h.Addr, infos, copy.HostOptions{SSH: ssh.Options{Getenv: h.Getenv}})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Sent)+len(before) != len(infos) {
				t.Errorf("rerun sent %d paths; %d of %d were there", len(res.Sent), len(before), len(infos))
			}
			for _, info := range res.Sent {
				if slices.Contains(before, info.Path) {
					t.Errorf("rerun re-sent %s", info.Path)
				}
			}
			checkSame(t, h, infos)
			t.Logf("cut after %d bytes: %d of %d paths were complete", tc.cutAfter, len(before), len(infos))
		})
	}
}

func paths(infos []*store.PathInfo) string {
	var b strings.Builder
	for i := len(infos) - 1; i >= 0; i-- { // referrers first, so deletion can proceed
		b.WriteString(infos[i].Path.String())
		b.WriteByte(' ')
	}
	return b.String()
}

// TestToHostPlan checks what ToHost tells as it goes (the plan, then each
// path as it starts) and HostLacks, which a caller asks after an
// interrupt.
func TestToHostPlan(t *testing.T) {
	_, infos := buildClosure(t, "plan")
	h := testhost.New(t, testhost.Options{})
	ctx := context.Background()
	base := copy.HostOptions{SSH: ssh.Options{Getenv: h.Getenv}}
	if _, err := copy.ToHost(ctx, h.Addr, infos[:2], base); err != nil {
		t.Fatal(err)
	}
	lacks, err := copy.HostLacks(ctx, h.Addr, infos, base)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pathList(lacks), pathList(infos[2:]); !slices.Equal(got, want) {
		t.Errorf("HostLacks = %v, want %v", got, want)
	}
	var plans [][2]int
	var sending []store.Path
	opts := base
	opts.Missing = func(closure, missing []*store.PathInfo) { plans = append(plans, [2]int{len(closure), len(missing)}) }
	opts.Sending = func(info *store.PathInfo) { sending = append(sending, info.Path) }
	if _, err := copy.ToHost(ctx, h.Addr, infos, opts); err != nil {
		t.Fatal(err)
	}
	if want := [][2]int{{len(infos), len(infos) - 2}}; !slices.Equal(plans, want) {
		t.Errorf("Missing calls (closure, missing) = %v, want %v", plans, want)
	}
	if want := pathList(infos[2:]); !slices.Equal(sending, want) {
		t.Errorf("Sending order %v, want %v", sending, want)
	}
	// Nothing left: the plan is still told, with nothing to send.
	plans, sending = nil, nil
	if _, err := copy.ToHost(ctx, h.Addr, infos, opts); err != nil {
		t.Fatal(err)
	}
	if want := [][2]int{{len(infos), 0}}; !slices.Equal(plans, want) || len(sending) != 0 {
		t.Errorf("second copy: Missing calls %v, Sending %v", plans, sending)
	}
	if lacks, err := copy.HostLacks(ctx, h.Addr, infos, base); err != nil || len(lacks) != 0 {
		t.Errorf("HostLacks after the copy = %v, %v", pathList(lacks), err)
	}
}

// TestToHostSSHErrors checks that ssh's own failures are reported as
// ssh's (a ConnectError), not as something the remote said.
func TestToHostSSHErrors(t *testing.T) {
	_, infos := buildClosure(t, "ssh-errors")
	h := testhost.New(t, testhost.Options{})
	// A port nobody listens on: bind one, then close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().(*net.TCPAddr).Port
	l.Close()
	otherKey := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(otherKey, []byte(testhost.HostKeyAlias+
		" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, sshSays string
		getenv        func(string) string
	}{
		{"refused", "Connection refused", h.GetenvPort(closed)},
		{"host-key", "Host key verification failed", func(k string) string {
			v := h.Getenv(k)
			if k == "NIX_SSHOPTS" {
				v = strings.Replace(v, "UserKnownHostsFile="+h.KnownHosts, "UserKnownHostsFile="+otherKey, 1)
			}
			return v
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := copy.ToHost(context.Background(), h.Addr, infos, copy.HostOptions{SSH: ssh.Options{Getenv: tc.getenv}})
			var ce *copy.ConnectError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T), want a ConnectError", err, err)
			}
			msg := err.Error()
			if ce.Host != h.Addr || !strings.Contains(msg, "cannot connect to '"+h.Addr+"'") ||
				!strings.Contains(msg, "ssh said: ") || !strings.Contains(msg, tc.sshSays) || strings.Contains(msg, "remote said") {
				t.Errorf("error %q", msg)
			}
		})
	}
}

func pathList(infos []*store.PathInfo) []store.Path {
	out := make([]store.Path, len(infos))
	for i, info := range infos {
		out[i] = info.Path
	}
	return out
}
