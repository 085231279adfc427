package copy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
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

// unsignedAdder adds to the local daemon without requiring signatures, as
// nbuild copy --from does.
type unsignedAdder struct{ c *daemon.Conn }

func (a unsignedAdder) AddToStoreNar(ctx context.Context, info *store.PathInfo, r io.Reader) error {
	return a.c.AddToStoreNarFlags(ctx, info, r, daemon.AddFlags{NoCheckSigs: true})
}

// buildOnHost builds testdata/closure.nix on h with a fresh salt, so only h
// has it, and returns its root and closure.
func buildOnHost(t *testing.T, h *testhost.Host, salt string) (store.Path, []store.Path) {
	t.Helper()
	expr, err := filepath.Abs("testdata/closure.nix")
	if err != nil {
		t.Fatal(err)
	}
	salt = fmt.Sprintf("%s-%d", salt, time.Now().UnixNano())
	root := store.MustParsePath(strings.TrimSpace(h.MustRun("nix-build", "--option", "substituters", "", "--no-out-link", expr, "--argstr", "salt", salt)))
	var closure []store.Path
	for _, p := range strings.Fields(h.MustRun("nix-store", "-qR", root.String())) {
		closure = append(closure, store.MustParsePath(p))
		if exec.Command("nix-store", "--check-validity", p).Run() == nil {
			t.Fatalf("%s is already valid locally", p)
		}
	}
	return root, closure
}

// localValid returns which of paths are valid in the local store.
func localValid(t *testing.T, c *daemon.Conn, paths []store.Path) []store.Path {
	t.Helper()
	v, err := c.QueryValidPaths(context.Background(), paths, false)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestFromHost(t *testing.T) {
	storetest.RequireDaemon(t)
	h := testhost.New(t, testhost.Options{})
	board := boardEnv(h)
	for _, tc := range []struct {
		name, compress, want string
		level                int
		board                bool
	}{
		{name: "auto", compress: "auto", want: "zstd", board: true},
		{name: "auto-loopback", compress: "auto", want: "none"},
		{name: "zstd-1", compress: "zstd", want: "zstd", level: 1},
		{name: "xz", compress: "xz", want: "xz"},
		{name: "none", compress: "none", want: "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, closure := buildOnHost(t, h, "fromhost-"+tc.name)
			addr, getenv := h.Addr, h.Getenv
			if tc.board {
				addr, getenv = "root@board", board
			}
			local := localConn(t)
			opts := copy.HostOptions{SSH: ssh.Options{Getenv: getenv}, Compress: tc.compress, Level: tc.level}
			var last copy.Progress
			opts.Progress = func(p copy.Progress) { last = p }
			res, err := copy.FromHost(context.Background(), addr, []store.Path{root}, local, unsignedAdder{local}, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Sent) != len(closure) || res.Compression != tc.want {
				t.Errorf("received %d of %d paths as %s, want all as %s", len(res.Sent), len(closure), res.Compression, tc.want)
			}
			if last.Paths != len(closure) || last.Bytes != last.TotalBytes {
				t.Errorf("last progress %+v", last)
			}
			infos, err := local.QueryPathInfos(context.Background(), closure)
			if err != nil {
				t.Fatal(err)
			}
			checkSame(t, h, infos)
			// Everything is here now: one session, nothing received.
			res, err = copy.FromHost(context.Background(), addr, []store.Path{root}, local, unsignedAdder{local}, opts)
			if err != nil || len(res.Sent) != 0 {
				t.Errorf("second copy: %d paths, %v", len(res.Sent), err)
			}
		})
	}
}

// TestFromHostInterrupted cuts the link during the NARs: only complete
// paths may be valid locally, and the rerun fetches exactly the rest.
func TestFromHostInterrupted(t *testing.T) {
	storetest.RequireDaemon(t)
	h := testhost.New(t, testhost.Options{})
	for _, tc := range []struct {
		name, compress string
		cutAfter       int64
	}{
		{"first-nar", "none", 1 << 20},
		{"middle", "none", 10 << 20},
		{"middle-zstd", "zstd", 600 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, closure := buildOnHost(t, h, "fromhost-cut-"+tc.name)
			relay := testhost.NewRelay(t, h.HostAddr(), testhost.RelayOptions{RateBytesPerSec: 50 << 20})
			relay.CutAfter(tc.cutAfter)
			local := localConn(t)
			opts := copy.HostOptions{SSH: ssh.Options{Getenv: h.GetenvPort(relay.Port)}, Compress: tc.compress}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := copy.FromHost(ctx, h.Addr, []store.Path{root}, local, unsignedAdder{local}, opts); err == nil {
				t.Fatalf("copy through a link cut after %d bytes succeeded", tc.cutAfter)
			}
			valid := localValid(t, local, closure)
			for _, p := range valid {
				if out, err := exec.Command("nix-store", "--verify-path", p.String()).CombinedOutput(); err != nil {
					t.Errorf("%s valid but does not verify: %v %s", p, err, out)
				}
			}
			if len(valid) == len(closure) {
				t.Fatalf("every path arrived before the cut at %d bytes", tc.cutAfter)
			}
			opts.SSH.Getenv = h.Getenv
			res, err := copy.FromHost(context.Background(), h.Addr, []store.Path{root}, local, unsignedAdder{local}, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Sent) != len(closure)-len(valid) {
				t.Errorf("rerun received %d paths, want the %d missing", len(res.Sent), len(closure)-len(valid))
			}
			if v := localValid(t, local, closure); len(v) != len(closure) {
				t.Errorf("after the rerun %d of %d paths valid", len(v), len(closure))
			}
		})
	}
}

// TestFromHostNotValid: a root the remote does not have is named, and
// nothing is received.
func TestFromHostNotValid(t *testing.T) {
	storetest.RequireDaemon(t)
	h := testhost.New(t, testhost.Options{})
	local := localConn(t)
	missing := store.MustParsePath("/nix/store/00000000000000000000000000000000-fromhost-missing")
	_, err := copy.FromHost(context.Background(), h.Addr, []store.Path{missing}, local, unsignedAdder{local}, copy.HostOptions{SSH: ssh.Options{Getenv: h.Getenv}})
	if err == nil || !strings.Contains(err.Error(), missing.String()) || !errors.Is(err, copy.ErrNoPathInfo) {
		t.Errorf("err = %v; want one naming %s", err, missing)
	}
}
