package location_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/location"
	"github.com/nbuild/nbuild/store/storetest"
)

func TestParse(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "nix", "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Dir(root))
	rel := filepath.Base(root) // a relative path with no ./, as README's testdata/store
	env := map[string]string{}
	opts := location.Options{Getenv: func(k string) string { return env[k] }}
	for _, tc := range []struct {
		uri  string
		env  map[string]string
		want location.Location
	}{
		{"", nil, location.Location{Kind: location.Daemon, URI: "auto", Socket: location.DefaultSocket}},
		{"auto", nil, location.Location{Kind: location.Daemon, URI: "auto", Socket: location.DefaultSocket}},
		{"daemon", map[string]string{"NIX_DAEMON_SOCKET_PATH": "/run/s"}, location.Location{Kind: location.Daemon, URI: "daemon", Socket: "/run/s"}},
		{"", map[string]string{"NIX_REMOTE": "unix:///tmp/d.sock"}, location.Location{Kind: location.Daemon, URI: "unix:///tmp/d.sock", Socket: "/tmp/d.sock"}},
		{"local", nil, location.Location{Kind: location.Daemon, URI: "local", Socket: location.DefaultSocket}},
		{"local?root=" + root, nil, location.Location{Kind: location.Chroot, URI: "local?root=" + root, Root: root}},
		{root, nil, location.Location{Kind: location.Chroot, URI: root, Root: root}},
		{rel + "/", nil, location.Location{Kind: location.Chroot, URI: rel + "/", Root: root}},
		{"ssh://root@pi", nil, location.Location{Kind: location.SSH, URI: "ssh://root@pi", Host: "root@pi"}},
		{"ssh-ng://box?remote-store=daemon", nil, location.Location{Kind: location.SSHNG, URI: "ssh-ng://box?remote-store=daemon", Host: "box"}},
		{"file:///srv/cache?compression=zstd", nil, location.Location{Kind: location.BinaryCache, URI: "file:///srv/cache?compression=zstd", Dir: "/srv/cache"}},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			env = tc.env
			got, err := location.Parse(tc.uri, opts)
			if err != nil {
				t.Fatal(err)
			}
			got.Params = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
	env = nil
	l, err := location.Parse("ssh-ng://box?remote-store=daemon&x=1", opts)
	if err != nil || l.Params.Get("remote-store") != "daemon" || l.Params.Get("x") != "1" {
		t.Errorf("params: %v %v", l.Params, err)
	}
}

// TestParseErrors: every URI Nix 2.8 refuses, and those nbuild cannot
// serve, are errors that name the URI and the accepted forms.
func TestParseErrors(t *testing.T) {
	for _, uri := range []string{"foo://bar", "blah", ".", "ssh-ng://", "ssh://a/b", "file://rel", "https://cache.example", "local?root=" + filepath.Join(t.TempDir(), "absent"), "%zz://x?%"} {
		_, err := location.Parse(uri, location.Options{Getenv: func(string) string { return "" }})
		if err == nil {
			t.Errorf("%s: no error", uri)
			continue
		}
		if !strings.Contains(err.Error(), "'"+uri+"'") && !strings.Contains(err.Error(), uri) {
			t.Errorf("%s: error does not name it: %v", uri, err)
		}
		if errors.Is(err, location.ErrUnknownStore) && !strings.Contains(err.Error(), location.Accepted) {
			t.Errorf("%s: error does not list the accepted forms: %v", uri, err)
		}
	}
}

// TestParseAgainstNix: the URIs Nix 2.8 does not know how to open are
// refused by both, with the same leading words.
func TestParseAgainstNix(t *testing.T) {
	storetest.RequireNix(t)
	for _, uri := range []string{"foo://bar", "blah", ".", "file://rel"} {
		out, err := exec.Command("nix", "--extra-experimental-features", "nix-command", "store", "ping", "--store", uri).CombinedOutput()
		if err == nil {
			t.Fatalf("nix store ping --store %s succeeded", uri)
		}
		nixMsg := strings.TrimPrefix(strings.TrimSpace(string(out)), "error: ")
		_, ours := location.Parse(uri, location.Options{Getenv: func(string) string { return "" }})
		if ours == nil || !strings.HasPrefix(ours.Error(), nixMsg) {
			t.Errorf("%s: nbuild says %v; Nix says %q", uri, ours, nixMsg)
		}
	}
}

// TestDial reaches the machine's nix-daemon through the default location;
// a chroot store has none.
func TestDial(t *testing.T) {
	storetest.RequireDaemon(t)
	l, err := location.Parse("daemon", location.Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Dial(t.Context(), daemonOptions())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := (location.Location{Kind: location.Chroot, URI: "/x", Root: "/x"}).Dial(t.Context(), daemonOptions()); err == nil {
		t.Error("a chroot store dialled a daemon")
	}
	bad := location.Location{Kind: location.Daemon, URI: "unix:///nonexistent.sock", Socket: filepath.Join(t.TempDir(), "none.sock")}
	if _, err := bad.Dial(t.Context(), daemonOptions()); err == nil || !strings.Contains(err.Error(), bad.Socket) {
		t.Errorf("missing socket: %v", err)
	}
}

func daemonOptions() daemon.Options { return daemon.Options{SkipSetOptions: true} }
