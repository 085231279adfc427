package daemon_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/ssh"
	"github.com/nbuild/nbuild/store/storetest"
	"github.com/nbuild/nbuild/store/testhost"
)

// sshConn runs `nix-daemon --stdio` on the test host through the system
// ssh (port picks sshd or a relay in front of it) and shakes hands.
func sshConn(t testing.TB, h *testhost.Host, port int, opts daemon.Options) *daemon.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sc, err := ssh.Dial(ctx, h.Addr, []string{"nix-daemon", "--stdio"}, ssh.Options{Getenv: h.GetenvPort(port)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := daemon.NewConn(ctx, sc, opts)
	if err != nil {
		t.Fatalf("handshake over ssh: %v; remote stderr: %s", err, sc.StderrTail())
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestConformanceOverSSH runs the store suite against a remote
// `nix-daemon --stdio` reached through ssh, as ssh-ng:// stores are.
func TestConformanceOverSSH(t *testing.T) {
	h := testhost.New(t, testhost.Options{})
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return sshConn(t, h, h.Port, daemon.Options{})
	})
}

// TestBuildOverSSH writes a .drv into the remote store and builds it there,
// with the build log arriving through the sink.
func TestBuildOverSSH(t *testing.T) {
	h := testhost.New(t, testhost.Options{})
	drvs := instantiate(t, t.TempDir(), "ssh-"+time.Now().Format(time.RFC3339Nano))
	sink := &logSink{}
	c := sshConn(t, h, h.Port, daemon.Options{Logger: sink.logger(), Settings: daemon.Settings{NoSubstitutes: true}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ok := drvs["ok"]
	if p, err := c.AddTextToStore(ctx, ok.path.Name(), ok.text, ok.refs); err != nil || p != ok.path {
		t.Fatalf("AddTextToStore = %s, %v", p, err)
	}
	res, err := c.BuildPathsWithResults(ctx, []store.DerivedPath{store.BuiltPath(ok.path, "out")}, store.BuildNormal)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Status != store.StatusBuilt || res[0].BuiltOutputs["out"] != ok.out {
		t.Fatalf("result %+v", res[0])
	}
	if !slices.Contains(sink.lines(), "hello-from-build") {
		t.Errorf("log lines %q", sink.lines())
	}
	// Differential: the host's own nix-store sees the output.
	if out, err := h.Run("nix-store", "-q", "--hash", ok.out.String()); err != nil {
		t.Errorf("remote nix-store -q --hash: %v (%s)", err, out)
	}
}

// TestPipelinedQueriesOverSlowLink queries 200 paths' infos over a link
// with 10 ms of delay each way, one round trip per path and pipelined, and
// checks both give the same infos, and that the pipelined queries turn the
// link around a few times where the serial ones turn it twice per path
// (the relay counts turns; the times are only logged).
func TestPipelinedQueriesOverSlowLink(t *testing.T) {
	if testing.Short() {
		t.Skip("slow link")
	}
	h := testhost.New(t, testhost.Options{})
	relay := testhost.NewRelay(t, h.HostAddr(), testhost.RelayOptions{RateBytesPerSec: 12_500_000, Delay: 10 * time.Millisecond})
	c := sshConn(t, h, relay.Port, daemon.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// 200 new paths; every other one is added (in one AddMultipleToStore).
	var paths []store.Path
	var infos []*store.PathInfo
	nars := map[store.Path][]byte{}
	for i := range 200 {
		o := storetest.NewObject(t, "slow-link", nil)
		paths = append(paths, o.Info.Path)
		if i%2 == 0 {
			infos = append(infos, o.Info)
			nars[o.Info.Path] = o.NAR
		}
	}
	err := c.AddMultipleToStore(ctx, infos, func(info *store.PathInfo, w io.Writer) error {
		_, err := w.Write(nars[info.Path])
		return err
	}, daemon.AddFlags{})
	if err != nil {
		t.Fatal(err)
	}

	start, turns := time.Now(), relay.Turns()
	serial := make([]*store.PathInfo, len(paths))
	for i, p := range paths {
		info, err := c.QueryPathInfo(ctx, p)
		if err != nil && !errors.Is(err, store.ErrNotValid) {
			t.Fatal(err)
		}
		serial[i] = info
	}
	tSerial, turnsSerial := time.Since(start), relay.Turns()-turns
	start, turns = time.Now(), relay.Turns()
	piped, err := c.QueryPathInfos(ctx, paths)
	if err != nil {
		t.Fatal(err)
	}
	tPiped, turnsPiped := time.Since(start), relay.Turns()-turns
	if turnsSerial < 2*int64(len(paths)) {
		t.Errorf("serial queries turned the link %d times, want at least %d: the relay does not count turns", turnsSerial, 2*len(paths))
	}
	// Requests go out in 32 KiB batches (all 200 fit in one); ssh's own
	// window adjustments may add a few turns.
	if turnsPiped > 20 {
		t.Errorf("pipelined queries turned the link %d times, want a few: the client waits for answers", turnsPiped)
	}
	for i := range paths {
		if (serial[i] == nil) != (piped[i] == nil) || (i%2 == 0) != (serial[i] != nil) {
			t.Fatalf("%s: serial %v, pipelined %v", paths[i], serial[i], piped[i])
		}
		if serial[i] != nil {
			storetest.CheckInfo(t, piped[i], serial[i])
		}
	}
	t.Logf("200 QueryPathInfo over a 20 ms RTT link: serial %v (%d turns), pipelined %v (%d turns)",
		tSerial.Round(time.Millisecond), turnsSerial, tPiped.Round(time.Millisecond), turnsPiped)
}
