// Package storetest holds what store tests share: the conformance suite
// every store.Store implementation passes, and the gates that tie tests to
// the real Nix installed by scripts/test-deps.sh.
package storetest

import (
	"os"
	"os/exec"
	"testing"

	"github.com/nbuild/nbuild/store"
)

// DaemonSocket is where the local nix-daemon listens.
const DaemonSocket = store.DaemonSocket

// RequireNix skips the test when Nix's command-line tools are missing, or
// fails it when CI=true: in CI a missing Nix is a broken setup, not a
// reason to run fewer tests. Run `make test` to install Nix.
func RequireNix(t testing.TB) {
	t.Helper()
	RequireTools(t, "nix-store", "nix-instantiate", "nix-daemon")
}

// RequireTools is the gate of every test that runs an outside program:
// it skips the test when one of tools is not on PATH, or fails it when
// CI=true, where scripts/test-deps.sh has installed them all. Call it
// before any setup, so a skipped test costs nothing.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing(t, tool+" not on PATH (run scripts/test-deps.sh)")
		}
	}
}

// RequireDaemon is RequireNix plus a listening local nix-daemon.
func RequireDaemon(t testing.TB) {
	t.Helper()
	RequireNix(t)
	if fi, err := os.Stat(DaemonSocket); err != nil || fi.Mode()&os.ModeSocket == 0 {
		missing(t, "no nix-daemon socket at "+DaemonSocket+" (run scripts/test-deps.sh)")
	}
}

// RequireRoot gates tests that create mount namespaces or chroot stores.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "needs root (mount namespaces, sshd)")
	}
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and %s", why)
	}
	t.Skip(why)
}
