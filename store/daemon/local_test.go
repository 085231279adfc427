package daemon_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/storetest"
)

func localConn(t testing.TB, opts daemon.Options) *daemon.Conn {
	t.Helper()
	storetest.RequireDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := daemon.Dial(ctx, storetest.DaemonSocket, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// nixStoreAdd adds a fresh temporary tree to the local store with
// `nix-store --add` and returns its path.
func nixStoreAdd(t testing.TB) store.Path {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "daemon-test-src")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 16)
	rand.Read(nonce)
	files := map[string]string{
		"a":         hex.EncodeToString(nonce),
		"sub/b":     strings.Repeat("bytes\n", 5000),
		"sub/empty": "",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "run"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/b", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nix-store", "--add", dir).Output()
	if err != nil {
		t.Fatalf("nix-store --add: %v", stderrOf(err))
	}
	return store.MustParsePath(strings.TrimSpace(string(out)))
}

func nixStoreQuery(t testing.TB, flag string, p store.Path) string {
	t.Helper()
	out, err := exec.Command("nix-store", "-q", flag, p.String()).Output()
	if err != nil {
		t.Fatalf("nix-store -q %s: %v", flag, stderrOf(err))
	}
	return strings.TrimSpace(string(out))
}

// TestLocalDaemon compares the client's answers with nix-store's for a
// path added to the local store.
func TestLocalDaemon(t *testing.T) {
	c := localConn(t, daemon.Options{})
	p := nixStoreAdd(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if !strings.HasPrefix(c.NixVersion(), "2.") {
		t.Errorf("NixVersion = %q", c.NixVersion())
	}
	if err := c.AddTempRoot(ctx, p); err != nil {
		t.Fatal(err)
	}
	valid, err := c.IsValidPath(ctx, p)
	if err != nil || !valid {
		t.Fatalf("IsValidPath = %v, %v", valid, err)
	}
	info, err := c.QueryPathInfo(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := info.NarHashString(), nixStoreQuery(t, "--hash", p); got != want {
		t.Errorf("narHash %s, nix-store says %s", got, want)
	}
	if got, want := strconv.FormatUint(info.NarSize, 10), nixStoreQuery(t, "--size", p); got != want {
		t.Errorf("narSize %s, nix-store says %s", got, want)
	}
	if refs := nixStoreQuery(t, "--references", p); refs != "" || len(info.References) != 0 {
		t.Errorf("references %v, nix-store says %q", info.References, refs)
	}
	if !strings.HasPrefix(info.CA, "fixed:r:sha256:") {
		t.Errorf("CA = %q", info.CA)
	}

	var got bytes.Buffer
	if err := c.NarFromPath(ctx, p, &got); err != nil {
		t.Fatal(err)
	}
	want, err := exec.Command("nix-store", "--dump", p.String()).Output()
	if err != nil {
		t.Fatal(stderrOf(err))
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("NarFromPath gave %d bytes, nix-store --dump %d", got.Len(), len(want))
	}

	missing := store.MustParsePath("/nix/store/00000000000000000000000000000000-daemon-test-missing")
	if _, err := c.QueryPathInfo(ctx, missing); !errors.Is(err, store.ErrNotValid) {
		t.Errorf("QueryPathInfo(missing) = %v, want ErrNotValid", err)
	}
	vs, err := c.QueryValidPaths(ctx, []store.Path{missing, p}, false)
	if err != nil || !slices.Equal(vs, []store.Path{p}) {
		t.Errorf("QueryValidPaths = %v, %v", vs, err)
	}
	// A daemon error leaves the connection usable.
	_, err = c.QueryDerivationOutputMap(ctx, missing)
	var de *daemon.Error
	if !errors.As(err, &de) || de.Op != daemon.OpQueryDerivationOutputMap || !strings.Contains(de.Message, "is not valid") {
		t.Errorf("QueryDerivationOutputMap(missing) = %v", err)
	}
	if ok, err := c.IsValidPath(ctx, p); err != nil || !ok {
		t.Errorf("after a daemon error: %v, %v", ok, err)
	}
}

// TestLocalQueryPathInfos checks the pipelined QueryPathInfos against one
// QueryPathInfo per path, over paths of every kind made in the local store.
func TestLocalQueryPathInfos(t *testing.T) {
	c := localConn(t, daemon.Options{})
	missing := store.MustParsePath("/nix/store/00000000000000000000000000000000-daemon-test-missing")
	paths := storetest.LocalContent(t)
	paths = append(paths[:len(paths)/2:len(paths)/2], append([]store.Path{missing}, paths[len(paths)/2:]...)...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	infos, err := c.QueryPathInfos(ctx, paths)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range paths {
		one, err := c.QueryPathInfo(ctx, p)
		if p == missing {
			if !errors.Is(err, store.ErrNotValid) || infos[i] != nil {
				t.Errorf("%s: QueryPathInfo error %v, pipelined info %v; want ErrNotValid and none", p, err, infos[i])
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if infos[i] == nil {
			t.Fatalf("%s: no pipelined info", p)
		}
		storetest.CheckInfo(t, infos[i], one)
	}
}

// TestLocalNegotiateDown announces the newest protocol this client knows to
// a Nix 2.8 daemon and expects 1.34 to be spoken.
func TestLocalNegotiateDown(t *testing.T) {
	c := localConn(t, daemon.Options{Version: daemon.MaxVersion})
	if c.DaemonVersion() != daemon.DefaultVersion {
		t.Skipf("daemon speaks %#x, not Nix 2.8's 1.34", c.DaemonVersion())
	}
	if c.Version() != daemon.DefaultVersion || c.Trust() != daemon.TrustUnknown {
		t.Errorf("negotiated %#x, trust %d", c.Version(), c.Trust())
	}
	p := storetest.LocalContent(t)
	ctx := context.Background()
	valid, err := c.QueryValidPaths(ctx, p, false)
	if err != nil {
		t.Fatal(err)
	}
	store.SortPaths(valid)
	if !slices.Equal(valid, p) {
		t.Errorf("QueryValidPaths at the negotiated version = %v, want all of %v", valid, p)
	}
}

// TestLocalQueryMissing instantiates (not builds) a derivation in the
// local store and asks what building it would take.
func TestLocalQueryMissing(t *testing.T) {
	c := localConn(t, daemon.Options{Settings: daemon.Settings{NoSubstitutes: true}})
	expr := filepath.Join(t.TempDir(), "test.nix")
	if err := os.WriteFile(expr, []byte(testExpr), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nix-instantiate", expr, "-A", "dep", "--argstr", "nonce", hex.EncodeToString(randBytes(8))).Output()
	if err != nil {
		t.Fatal(stderrOf(err))
	}
	drvPath := store.MustParsePath(strings.TrimSpace(string(out)))
	ctx := context.Background()
	m, err := c.QueryMissing(ctx, []store.DerivedPath{store.BuiltPath(drvPath)})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.WillBuild) != 2 || !slices.Contains(m.WillBuild, drvPath) {
		t.Errorf("WillBuild = %v", m.WillBuild)
	}
	outs, err := c.QueryDerivationOutputMap(ctx, drvPath)
	if err != nil || len(outs) != 1 || outs["out"].IsZero() {
		t.Errorf("outputs = %v, %v", outs, err)
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestNarsFromPaths streams several NARs through one pipelined call and
// compares each with nix-store --dump; an invalid path among them ends the
// call after the NARs before it.
func TestNarsFromPaths(t *testing.T) {
	storetest.RequireDaemon(t)
	ctx := context.Background()
	var paths []store.Path
	for range 5 {
		paths = append(paths, nixStoreAdd(t))
	}
	c := localConn(t, daemon.Options{})
	var got [][]byte
	err := c.NarsFromPaths(ctx, paths, func(i int, r io.Reader) error {
		if i != len(got) {
			t.Errorf("NAR %d handed over after %d", i, len(got))
		}
		b, err := io.ReadAll(r)
		got = append(got, b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range paths {
		want, err := exec.Command("nix-store", "--dump", p.String()).Output()
		if err != nil {
			t.Fatal(stderrOf(err))
		}
		if !bytes.Equal(got[i], want) {
			t.Errorf("NAR %d of %s: %d bytes, nix-store --dump %d", i, p, len(got[i]), len(want))
		}
	}
	// The connection is still usable after a complete call.
	if _, err := c.QueryPathInfo(ctx, paths[0]); err != nil {
		t.Fatalf("after NarsFromPaths: %v", err)
	}

	missing := store.MustParsePath("/nix/store/00000000000000000000000000000000-daemon-test-missing")
	// 2.8 starts the NAR of a path missing from disk (its magic) and then
	// sends the error frame: the NAR fails to parse.
	n := 0
	err = c.NarsFromPaths(ctx, []store.Path{paths[0], paths[1], missing, paths[2]}, func(i int, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		if err == nil {
			n++
		}
		return err
	})
	if err == nil || n != 2 || !errors.Is(err, daemon.ErrBroken) || !strings.Contains(err.Error(), missing.String()) {
		t.Errorf("with an invalid third path: %d complete NARs, err %v; want 2 and ErrBroken naming it", n, err)
	}

	// each's own error comes back as it is.
	c = localConn(t, daemon.Options{})
	stop := errors.New("stop here")
	err = c.NarsFromPaths(ctx, paths, func(i int, r io.Reader) error {
		if i == 1 {
			return stop // without reading the NAR
		}
		_, err := io.Copy(io.Discard, r)
		return err
	})
	if !errors.Is(err, stop) {
		t.Errorf("each's error: got %v", err)
	}
}
