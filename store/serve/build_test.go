package serve_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/serve"
	"github.com/nbuild/nbuild/store/testhost"
)

// instantiate runs nix-instantiate for a /bin/sh derivation on the test
// host and returns its .drv path and parsed derivation.
func instantiate(t *testing.T, h *testhost.Host, name, script string) (store.Path, *drv.Derivation) {
	t.Helper()
	expr := `derivation { name = "` + name + `"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" ''` + script + `'' ]; }`
	out := h.MustRun("nix-instantiate", "--expr", expr)
	p, err := store.ParsePath(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(h.StoreDir(), p.Base()))
	if err != nil {
		t.Fatal(err)
	}
	d, err := drv.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return p, d
}

// TestBuildDerivationOverSSH builds a derivation on a test host without
// relying on its .drv (BuildDerivation), then a failing one, then one by
// its .drv (BuildPaths).
func TestBuildDerivationOverSSH(t *testing.T) {
	h := testhost.New(t, testhost.Options{})
	c := sshServer(t, h, h.Port)

	drvPath, d := instantiate(t, h, "serve-build-ok", `echo built by nbuild > $out; echo a log line >&2`)
	res, err := c.BuildDerivation(ctxT(t), drvPath, d, serve.BuildOptions{})
	if err != nil {
		t.Fatalf("BuildDerivation: %v", err)
	}
	if res.Status != store.StatusBuilt {
		t.Errorf("status %s, want Built", res.Status)
	}
	if res.TimesBuilt != 1 || res.StartTime == 0 || res.StopTime < res.StartTime {
		t.Errorf("result times: %+v", res)
	}
	// Nix 2.8 sends builtOutputs whatever version the client announced;
	// reading them proves the stream stayed in step.
	out := d.Outputs[0].Path
	if got := res.BuiltOutputs["out"]; got != out {
		t.Errorf("BuiltOutputs = %v, want out → %s", res.BuiltOutputs, out)
	}
	b, err := os.ReadFile(filepath.Join(h.StoreDir(), out.Base()))
	if err != nil || string(b) != "built by nbuild\n" {
		t.Errorf("output on host: %q, %v", b, err)
	}
	h.MustRun("nix-store", "--verify-path", out.String())

	// Same connection: a failing build is a result, not a broken stream.
	badPath, bad := instantiate(t, h, "serve-build-fail", `echo going to fail >&2; exit 3`)
	res, err = c.BuildDerivation(ctxT(t), badPath, bad, serve.BuildOptions{})
	var be *store.BuildError
	if !errors.As(err, &be) || res == nil || res.Status.Success() {
		t.Fatalf("failing build: %v, %+v; want a *store.BuildError", err, res)
	}
	if !strings.Contains(be.Message, "failed") {
		t.Errorf("build error message %q", be.Message)
	}
	t.Logf("failing build: %v", err)

	// BuildPaths needs the .drv on the host, which nix-instantiate put there.
	p3, d3 := instantiate(t, h, "serve-build-paths", `echo three > $out`)
	if err := c.BuildPaths(ctxT(t), []store.DerivedPath{store.BuiltPath(p3, "out")}, serve.BuildOptions{}); err != nil {
		t.Fatalf("BuildPaths: %v", err)
	}
	h.MustRun("nix-store", "--verify-path", d3.Outputs[0].Path.String())
	if err := c.BuildPaths(ctxT(t), []store.DerivedPath{store.BuiltPath(badPath)}, serve.BuildOptions{}); err == nil {
		t.Error("BuildPaths of a failing derivation succeeded")
	} else if !errors.As(err, &be) {
		t.Errorf("BuildPaths failure %v is not a *store.BuildError", err)
	}
	// Still in step.
	valid, err := c.QueryValidPaths(ctxT(t), []store.Path{drvPath, badPath}, false)
	if err != nil || len(valid) != 2 {
		t.Errorf("after builds QueryValidPaths = %v, %v", valid, err)
	}
}
