package storetest

import (
	"os/exec"
	"testing"
)

// NixStore runs the real `nix-store --store root ARGS...` (root "" for the
// machine's store) and returns its stdout, failing t when it fails. Call
// RequireNix first.
func NixStore(t testing.TB, root string, args ...string) string {
	t.Helper()
	if root != "" {
		args = append([]string{"--store", root}, args...)
	}
	out, err := exec.Command("nix-store", args...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("nix-store %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("nix-store %v: %v", args, err)
	}
	return string(out)
}
