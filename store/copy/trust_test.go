package copy_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/copy"
	"github.com/nbuild/nbuild/store/ssh"
	"github.com/nbuild/nbuild/store/storetest"
	"github.com/nbuild/nbuild/store/testhost"
)

// signClosure signs every path of infos in the local store with a fresh
// key (nix store sign) and returns the closure as the local daemon now
// reports it, signatures included, and the public key.
func signClosure(t *testing.T, root store.Path, infos []*store.PathInfo) ([]*store.PathInfo, string) {
	t.Helper()
	dir := t.TempDir()
	secret, public := filepath.Join(dir, "secret"), filepath.Join(dir, "public")
	keyName := "nbuild-trust-test-" + filepath.Base(dir)
	if out, err := exec.Command("nix-store", "--generate-binary-cache-key", keyName, secret, public).CombinedOutput(); err != nil {
		t.Fatalf("nix-store --generate-binary-cache-key: %v: %s", err, out)
	}
	args := []string{"--extra-experimental-features", "nix-command", "store", "sign", "--key-file", secret}
	for _, info := range infos {
		args = append(args, info.Path.String())
	}
	if out, err := exec.Command("nix", args...).CombinedOutput(); err != nil {
		t.Fatalf("nix store sign: %v: %s", err, out)
	}
	signed, err := copy.Closure(context.Background(), localConn(t), []store.Path{root})
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range signed {
		if !hasSig(info.Sigs, keyName) {
			t.Fatalf("%s carries no signature by %s after nix store sign: %q", info.Path, keyName, info.Sigs)
		}
	}
	pub, err := os.ReadFile(public)
	if err != nil {
		t.Fatal(err)
	}
	return signed, strings.TrimSpace(string(pub))
}

func hasSig(sigs []string, keyName string) bool {
	for _, s := range sigs {
		if strings.HasPrefix(s, keyName+":") {
			return true
		}
	}
	return false
}

// TestToHostNotTrusted copies as a user the remote's nix-daemon does not
// trust (a real one: the test host's Options.User): unsigned paths are
// refused with ErrNotTrusted and an explanation naming the host and the
// fix, and none becomes valid; the same copy of paths signed with a key
// in the remote's trusted-public-keys succeeds, signatures included.
func TestToHostNotTrusted(t *testing.T) {
	storetest.RequireTrusted(t) // signing the closure (nix store sign) needs it
	_, unsigned := buildClosure(t, "untrusted")
	root, toSign := buildClosure(t, "untrusted-signed")
	signed, pub := signClosure(t, root, toSign)
	keyName, _, _ := strings.Cut(pub, ":")
	h := testhost.New(t, testhost.Options{User: "nbuildcopy", NixConf: "trusted-public-keys = " + pub + "\n"})

	for _, tc := range []struct {
		name, compress, proto string
		noDaemon              bool
	}{
		{name: "zstd", compress: "zstd", proto: "daemon"},
		{name: "none", compress: "none", proto: "daemon"},
		// Through the serve fallback the refusal reaches explain only as
		// the remote's stderr.
		{name: "serve", compress: "none", proto: "serve", noDaemon: true},
	} {
		opts := copy.HostOptions{SSH: ssh.Options{Getenv: h.Getenv}, Compress: tc.compress, NoDaemon: tc.noDaemon}
		t.Run(tc.name+"/unsigned", func(t *testing.T) {
			h.MustRun("sh", "-c", "nix-store --delete "+paths(unsigned)+" >/dev/null 2>&1 || true")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_, err := copy.ToHost(ctx, h.UserAddr, unsigned, opts)
			if err == nil {
				t.Fatal("an untrusted user's copy of unsigned paths succeeded")
			}
			if !errors.Is(err, copy.ErrNotTrusted) {
				t.Errorf("error is not ErrNotTrusted: %v", err)
			}
			for _, want := range []string{
				"lacks a valid signature", "trusted-users on " + h.UserAddr, "trusted-public-keys",
			} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
			if v := remoteValid(t, h, unsigned); len(v) != 0 {
				t.Errorf("refused paths are valid on the remote: %v", v)
			}
		})
		t.Run(tc.name+"/signed", func(t *testing.T) {
			h.MustRun("sh", "-c", "nix-store --delete "+paths(signed)+" >/dev/null 2>&1 || true")
			if v := remoteValid(t, h, signed); len(v) != 0 {
				t.Fatalf("remote still holds %v", v)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := copy.ToHost(ctx, h.UserAddr, signed, opts)
			if err != nil {
				t.Fatalf("copy of signed paths: %v", err)
			}
			if len(res.Sent) != len(signed) || res.Protocol != tc.proto || res.Compression != tc.compress {
				t.Errorf("sent %d of %d paths by %s as %s, want all by %s as %s",
					len(res.Sent), len(signed), res.Protocol, res.Compression, tc.proto, tc.compress)
			}
			checkSame(t, h, signed)
			for _, info := range signed {
				out, err := h.Run("nix", "--extra-experimental-features", "nix-command", "path-info", "--sigs", info.Path.String())
				if err != nil {
					t.Fatal(err)
				}
				if !hasSig(strings.Fields(out), keyName) {
					t.Errorf("remote %s lacks the signature by %s: %q", info.Path, keyName, out)
				}
			}
		})
	}

	// The explanation's other fix: once trusted, the user copies unsigned
	// paths.
	t.Run("trusted-users", func(t *testing.T) {
		h := testhost.New(t, testhost.Options{User: "nbuildcopy", NixConf: "trusted-users = root nbuildcopy\n"})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		res, err := copy.ToHost(ctx, h.UserAddr, unsigned, copy.HostOptions{SSH: ssh.Options{Getenv: h.Getenv}})
		if err != nil {
			t.Fatalf("a trusted user's copy of unsigned paths: %v", err)
		}
		if len(res.Sent) != len(unsigned) {
			t.Errorf("sent %d of %d paths", len(res.Sent), len(unsigned))
		}
		checkSame(t, h, unsigned)
	})
}
