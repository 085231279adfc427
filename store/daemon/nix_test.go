package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/storetest"
)

// procStream is the stdin/stdout of a `nix-daemon --stdio` child as one
// io.ReadWriteCloser.
type procStream struct {
	stdout io.ReadCloser
	stdin  io.WriteCloser
}

func (p *procStream) Read(b []byte) (int, error)  { return p.stdout.Read(b) }
func (p *procStream) Write(b []byte) (int, error) { return p.stdin.Write(b) }
func (p *procStream) Close() error {
	err := p.stdin.Close()
	p.stdout.Close()
	return err
}

// startDaemon runs `nix-daemon --stdio` serving the chroot store under root
// and returns its stream; the child is waited for (and killed by pid if it
// lingers) when the test ends.
func startDaemon(t testing.TB, root string) io.ReadWriteCloser {
	t.Helper()
	requireDaemonTools(t)
	s, err := spawnDaemon(t, root)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// requireDaemonTools gates the tests that run private daemons.
func requireDaemonTools(t testing.TB) {
	t.Helper()
	storetest.RequireNix(t)
	storetest.RequireRoot(t)
}

// spawnDaemon is startDaemon for callers that may not end the test (a
// pool's dial runs while subtests do): it returns its failure, and only
// registers the child's teardown with t.
func spawnDaemon(t testing.TB, root string) (io.ReadWriteCloser, error) {
	// Builds in a chroot store run in a chroot: give them the host's /bin/sh.
	var sandboxPaths []string
	for _, p := range []string{"/bin", "/usr", "/lib", "/lib64"} {
		if _, err := os.Stat(p); err == nil {
			sandboxPaths = append(sandboxPaths, p)
		}
	}
	cmd := exec.Command("nix-daemon", "--stdio", "--store", "local?root="+root,
		"--option", "sandbox-paths", strings.Join(sandboxPaths, " "),
		"--option", "substituters", "")
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("nix-daemon stderr:\n%s", stderr.String())
		}
	})
	return &procStream{stdout: stdout, stdin: stdin}, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Len() }
func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func privateConn(t testing.TB, root string, opts daemon.Options) *daemon.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := daemon.NewConn(ctx, startDaemon(t, root), opts)
	if err != nil {
		t.Fatalf("handshake with private nix-daemon: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConformancePrivateDaemon(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return privateConn(t, t.TempDir(), daemon.Options{})
	})
}

func TestConformancePool(t *testing.T) {
	requireDaemonTools(t)
	storetest.Run(t, func(t *testing.T) storetest.Store {
		root := t.TempDir()
		p := daemon.NewPool(2, func(ctx context.Context) (*daemon.Conn, error) {
			s, err := spawnDaemon(t, root)
			if err != nil {
				return nil, err
			}
			return daemon.NewConn(ctx, s, daemon.Options{})
		})
		t.Cleanup(func() { p.Close() })
		return p
	})
}

// logSink records what a daemon reports.
type logSink struct {
	mu         sync.Mutex
	msgs       []string
	activities []daemon.Activity
	buildLines []string
	stopped    int
}

func (s *logSink) logger() daemon.Logger {
	return daemon.LogFuncs{
		OnLog: func(m string) { s.mu.Lock(); s.msgs = append(s.msgs, m); s.mu.Unlock() },
		OnStartActivity: func(a daemon.Activity) {
			s.mu.Lock()
			s.activities = append(s.activities, a)
			s.mu.Unlock()
		},
		OnStopActivity: func(uint64) { s.mu.Lock(); s.stopped++; s.mu.Unlock() },
		OnResult: func(r daemon.Result) {
			if r.Type == daemon.ResBuildLogLine && len(r.Fields) > 0 {
				s.mu.Lock()
				s.buildLines = append(s.buildLines, r.Fields[0].String)
				s.mu.Unlock()
			}
		},
	}
}

func (s *logSink) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.buildLines)
}

func (s *logSink) buildActivity(drvPath string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.activities {
		if a.Type == daemon.ActBuild && len(a.Fields) > 0 && a.Fields[0].String == drvPath {
			return true
		}
	}
	return false
}

const testExpr = `{ nonce }: rec {
  ok = derivation { name = "daemontest-ok"; system = builtins.currentSystem; builder = "/bin/sh";
    args = ["-c" "echo hello-from-build; echo second line; echo ok > $out"]; inherit nonce; };
  fail = derivation { name = "daemontest-fail"; system = builtins.currentSystem; builder = "/bin/sh";
    args = ["-c" "echo about to fail; echo really failing; exit 3"]; inherit nonce; };
  dep = derivation { name = "daemontest-dep"; system = builtins.currentSystem; builder = "/bin/sh";
    args = ["-c" "read x < ${ok}; echo $x > $out"]; inherit nonce; };
  direct = derivation { name = "daemontest-direct"; system = builtins.currentSystem; builder = "/bin/sh";
    args = ["-c" "echo direct-build-log; echo direct > $out"]; inherit nonce; };
  directFail = derivation { name = "daemontest-direct-fail"; system = builtins.currentSystem; builder = "/bin/sh";
    args = ["-c" "echo direct-failure-log; exit 7"]; inherit nonce; };
}`

// testDrv is a derivation instantiated by real Nix into a scratch store.
type testDrv struct {
	path store.Path
	text []byte // the .drv file
	refs []store.Path
	drv  *drv.Derivation
	out  store.Path
}

// instantiate evaluates testExpr with real nix-instantiate into a chroot
// store under root and returns each attribute's .drv, read back with
// `nix show-derivation`.
func instantiate(t *testing.T, root, nonce string) map[string]*testDrv {
	t.Helper()
	expr := filepath.Join(t.TempDir(), "test.nix")
	if err := os.WriteFile(expr, []byte(testExpr), 0o644); err != nil {
		t.Fatal(err)
	}
	attrs := []string{"ok", "fail", "dep", "direct", "directFail"}
	args := []string{"--store", "local?root=" + root, expr, "--argstr", "nonce", nonce}
	for _, a := range attrs {
		args = append(args, "-A", a)
	}
	out, err := exec.Command("nix-instantiate", args...).Output()
	if err != nil {
		t.Fatalf("nix-instantiate: %v", stderrOf(err))
	}
	paths := strings.Fields(string(out))
	if len(paths) != len(attrs) {
		t.Fatalf("nix-instantiate printed %q", out)
	}
	drvs := map[string]*testDrv{}
	for i, a := range attrs {
		td := &testDrv{path: store.MustParsePath(paths[i])}
		if td.text, err = os.ReadFile(filepath.Join(root, paths[i])); err != nil {
			t.Fatal(err)
		}
		td.drv, td.refs = showDerivation(t, root, paths[i])
		td.out = td.drv.Outputs[0].Path
		drvs[a] = td
	}
	return drvs
}

func showDerivation(t *testing.T, root, path string) (*drv.Derivation, []store.Path) {
	t.Helper()
	out, err := exec.Command("nix", "--extra-experimental-features", "nix-command",
		"show-derivation", "--store", "local?root="+root, path).Output()
	if err != nil {
		t.Fatalf("nix show-derivation: %v", stderrOf(err))
	}
	var js map[string]struct {
		Outputs map[string]struct {
			Path     string `json:"path"`
			HashAlgo string `json:"hashAlgo"`
			Hash     string `json:"hash"`
		} `json:"outputs"`
		InputSrcs []string            `json:"inputSrcs"`
		InputDrvs map[string][]string `json:"inputDrvs"`
		System    string              `json:"system"`
		Builder   string              `json:"builder"`
		Args      []string            `json:"args"`
		Env       map[string]string   `json:"env"`
	}
	if err := json.Unmarshal(out, &js); err != nil {
		t.Fatal(err)
	}
	j := js[path]
	d := &drv.Derivation{InputSrcs: j.InputSrcs, Platform: j.System, Builder: j.Builder, Args: j.Args}
	var refs []store.Path
	for _, name := range slices.Sorted(mapsKeys(j.Outputs)) {
		o := j.Outputs[name]
		var op store.Path // zero when the output is floating
		if o.Path != "" {
			op = store.MustParsePath(o.Path)
		}
		d.Outputs = append(d.Outputs, drv.Output{Name: name, Path: op, HashAlgo: o.HashAlgo, Hash: o.Hash})
	}
	for _, p := range slices.Sorted(mapsKeys(j.InputDrvs)) {
		d.InputDrvs = append(d.InputDrvs, drv.InputDrv{Path: store.MustParsePath(p), Outputs: j.InputDrvs[p]})
		refs = append(refs, store.MustParsePath(p))
	}
	for _, p := range j.InputSrcs {
		refs = append(refs, store.MustParsePath(p))
	}
	for _, k := range slices.Sorted(mapsKeys(j.Env)) {
		d.Env = append(d.Env, drv.EnvVar{Key: k, Value: j.Env[k]})
	}
	return d, refs
}

func mapsKeys[M ~map[string]V, V any](m M) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return err.Error() + ": " + string(ee.Stderr)
	}
	return err.Error()
}

// TestPrivateDaemonBuild writes .drv files with AddToStore, builds them with
// BuildPaths, BuildPathsWithResults and BuildDerivation, and checks logs,
// failures and QueryMissing against a private nix-daemon.
func TestPrivateDaemonBuild(t *testing.T) {
	storetest.RequireNix(t)
	storetest.RequireRoot(t)
	drvs := instantiate(t, t.TempDir(), "build-"+time.Now().Format(time.RFC3339Nano))
	sink := &logSink{}
	c := privateConn(t, t.TempDir(), daemon.Options{Logger: sink.logger()})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The .drv files go in through AddToStore(text); the daemon must give
	// them the path real Nix computed.
	for _, name := range []string{"ok", "fail", "dep"} {
		td := drvs[name]
		got, err := c.AddTextToStore(ctx, td.path.Name(), td.text, td.refs)
		if err != nil {
			t.Fatalf("AddTextToStore(%s): %v", name, err)
		}
		if got != td.path {
			t.Fatalf("AddTextToStore(%s) = %s, nix-instantiate said %s", name, got, td.path)
		}
	}
	ok, fail, dep := drvs["ok"], drvs["fail"], drvs["dep"]

	t.Run("QueryMissing", func(t *testing.T) {
		m, err := c.QueryMissing(ctx, []store.DerivedPath{store.BuiltPath(dep.path, "out")})
		if err != nil {
			t.Fatal(err)
		}
		store.SortPaths(m.WillBuild)
		want := []store.Path{ok.path, dep.path}
		store.SortPaths(want)
		if !slices.Equal(m.WillBuild, want) {
			t.Errorf("WillBuild = %v, want %v", m.WillBuild, want)
		}
		if len(m.WillSubstitute) != 0 || len(m.Unknown) != 0 {
			t.Errorf("WillSubstitute = %v, Unknown = %v", m.WillSubstitute, m.Unknown)
		}
	})

	t.Run("QueryDerivationOutputMap", func(t *testing.T) {
		outs, err := c.QueryDerivationOutputMap(ctx, ok.path)
		if err != nil {
			t.Fatal(err)
		}
		if len(outs) != 1 || outs["out"] != ok.out {
			t.Fatalf("outputs = %v, want out=%s", outs, ok.out)
		}
	})

	t.Run("BuildPaths", func(t *testing.T) {
		if err := c.BuildPaths(ctx, []store.DerivedPath{store.BuiltPath(dep.path, "out")}, store.BuildNormal); err != nil {
			t.Fatal(err)
		}
		for _, p := range []store.Path{ok.out, dep.out} {
			if valid, err := c.IsValidPath(ctx, p); err != nil || !valid {
				t.Fatalf("IsValidPath(%s) = %v, %v after build", p, valid, err)
			}
		}
		if lines := sink.lines(); !slices.Contains(lines, "hello-from-build") || !slices.Contains(lines, "second line") {
			t.Errorf("build log lines seen by the sink: %q", lines)
		}
		if !sink.buildActivity(ok.path.String()) {
			t.Errorf("no build activity for %s", ok.path)
		}
		if err := c.EnsurePath(ctx, ok.out); err != nil {
			t.Errorf("EnsurePath: %v", err)
		}
		if err := c.AddTempRoot(ctx, dep.out); err != nil {
			t.Errorf("AddTempRoot: %v", err)
		}
	})

	t.Run("BuildPathsFailure", func(t *testing.T) {
		err := c.BuildPaths(ctx, []store.DerivedPath{store.BuiltPath(fail.path)}, store.BuildNormal)
		var de *daemon.Error
		if !errorsAs(err, &de) {
			t.Fatalf("BuildPaths(fail) error = %v (%T), want *daemon.Error", err, err)
		}
		if de.Op != daemon.OpBuildPaths || !strings.Contains(de.Message, fail.path.String()) {
			t.Errorf("error = %+v", de)
		}
		if !slices.Contains(de.LogTail, "about to fail") || !slices.Contains(de.LogTail, "really failing") {
			t.Errorf("LogTail = %q", de.LogTail)
		}
		if strings.Contains(de.Message, "\x1b") {
			t.Errorf("message keeps ANSI escapes: %q", de.Message)
		}
		// The connection survives a failed build.
		if _, err := c.QueryPathInfo(ctx, ok.out); err != nil {
			t.Fatalf("after failed build: %v", err)
		}
	})

	t.Run("BuildPathsWithResults", func(t *testing.T) {
		targets := []store.DerivedPath{
			store.BuiltPath(fail.path, "out"),
			store.OpaquePath(ok.out),
			store.BuiltPath(ok.path, "out"),
		}
		res, err := c.BuildPathsWithResults(ctx, targets, store.BuildNormal)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 3 {
			t.Fatalf("%d results", len(res))
		}
		if res[0].Status != store.StatusPermanentFailure || !strings.Contains(res[0].ErrorMsg, "exit code 3") {
			t.Errorf("fail: %+v", res[0])
		}
		if res[1].Status != store.StatusAlreadyValid {
			t.Errorf("opaque ok.out: %+v", res[1])
		}
		if !res[2].Status.Success() || res[2].BuiltOutputs["out"] != ok.out {
			t.Errorf("ok!out: %+v", res[2])
		}
	})

	t.Run("BuildDerivation", func(t *testing.T) {
		// BuildDerivation needs no .drv in the store: direct's was never added.
		direct := drvs["direct"]
		res, err := c.BuildDerivation(ctx, direct.path, direct.drv, store.BuildNormal)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != store.StatusBuilt || res.BuiltOutputs["out"] != direct.out || res.TimesBuilt != 1 {
			t.Errorf("result = %+v", res)
		}
		if res.StopTime < res.StartTime || res.StartTime == 0 {
			t.Errorf("times %d..%d", res.StartTime, res.StopTime)
		}
		if !slices.Contains(sink.lines(), "direct-build-log") {
			t.Errorf("build log lines: %q", sink.lines())
		}
		var out bytes.Buffer
		if err := c.NarFromPath(ctx, direct.out, &out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(out.Bytes(), []byte("direct\n")) {
			t.Errorf("output NAR %q", out.Bytes())
		}
	})

	t.Run("BuildDerivationFailure", func(t *testing.T) {
		df := drvs["directFail"]
		res, err := c.BuildDerivation(ctx, df.path, df.drv, store.BuildNormal)
		var be *store.BuildError
		if !errorsAs(err, &be) {
			t.Fatalf("error = %v (%T), want *store.BuildError", err, err)
		}
		if be.Status != store.StatusPermanentFailure || res == nil || res.Status != be.Status {
			t.Errorf("status %v, result %+v", be.Status, res)
		}
		if !strings.Contains(be.Message, "exit code 7") || !slices.Contains(be.LogTail, "direct-failure-log") {
			t.Errorf("error %q, tail %q", be.Message, be.LogTail)
		}
	})
}

// TestAddMultipleToStore sends new paths and an already-valid one, which
// Nix 2.8 would choke on if it were sent.
func TestAddMultipleToStore(t *testing.T) {
	c := privateConn(t, t.TempDir(), daemon.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := storetest.NewObject(t, "multi-a", nil)
	b := storetest.NewObject(t, "multi-b", []store.Path{a.Info.Path})
	c2 := storetest.NewObject(t, "multi-c", []store.Path{a.Info.Path, b.Info.Path})
	if err := c.AddToStoreNar(ctx, a.Info, bytes.NewReader(a.NAR)); err != nil {
		t.Fatal(err)
	}
	objs := map[store.Path]*storetest.Object{a.Info.Path: a, b.Info.Path: b, c2.Info.Path: c2}
	var sent []store.Path
	err := c.AddMultipleToStore(ctx, []*store.PathInfo{a.Info, b.Info, c2.Info}, func(info *store.PathInfo, w io.Writer) error {
		sent = append(sent, info.Path)
		_, err := w.Write(objs[info.Path].NAR)
		return err
	}, daemon.AddFlags{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sent, []store.Path{b.Info.Path, c2.Info.Path}) {
		t.Errorf("sent %v, want only the missing b and c", sent)
	}
	for _, o := range []*storetest.Object{b, c2} {
		info, err := c.QueryPathInfo(ctx, o.Info.Path)
		if err != nil {
			t.Fatal(err)
		}
		storetest.CheckInfo(t, info, o.Info)
	}
}

func errorsAs[T error](err error, target *T) bool { return errors.As(err, target) }

// TestRejectedUploadKeepsConnection: the daemon drains a rejected upload's
// frames, so the same connection goes on working (the suite allows stores
// where it does not).
func TestRejectedUploadKeepsConnection(t *testing.T) {
	c := privateConn(t, t.TempDir(), daemon.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := storetest.NewObject(t, "rejected", nil)
	b := storetest.NewObject(t, "rejected", nil)
	err := c.AddToStoreNar(ctx, a.Info, bytes.NewReader(b.NAR))
	var de *daemon.Error
	if !errors.As(err, &de) || !strings.Contains(de.Message, "hash mismatch") {
		t.Fatalf("AddToStoreNar with the wrong NAR = %v, want a hash mismatch *daemon.Error", err)
	}
	if err := c.AddToStoreNar(ctx, b.Info, bytes.NewReader(b.NAR)); err != nil {
		t.Fatalf("next upload on the same connection: %v", err)
	}
	valid, err := c.QueryValidPaths(ctx, []store.Path{a.Info.Path, b.Info.Path}, false)
	if err != nil || !slices.Equal(valid, []store.Path{b.Info.Path}) {
		t.Fatalf("QueryValidPaths = %v, %v", valid, err)
	}
}
