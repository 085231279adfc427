package storetest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestObjectMatchesNix checks the suite's own NAR writer and CA path
// computation against real Nix: nix-store --dump of the same tree gives
// the same bytes, nix-store --add the same path.
func TestObjectMatchesNix(t *testing.T) {
	RequireDaemon(t)
	text := []byte("some contents\n")
	dir := filepath.Join(t.TempDir(), "storetest-self")
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a"), text, 0o644); err != nil {
		t.Fatal(err)
	}
	script := []byte("#!/bin/sh\nexit 0\n")
	if err := os.WriteFile(filepath.Join(dir, "bin", "x"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	narBytes := DirNAR([]NAREntry{
		{Name: "a", Contents: text},
		{Name: "bin", Dir: []NAREntry{{Name: "x", Executable: true, Contents: script}}},
		{Name: "link", Target: "a"},
	})
	dump, err := exec.Command("nix-store", "--dump", dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dump, narBytes) {
		t.Fatalf("DirNAR differs from nix-store --dump (%d vs %d bytes)", len(narBytes), len(dump))
	}
	info, err := CAInfo("storetest-self", narBytes, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nix-store", "--add", dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != info.Path.String() {
		t.Fatalf("CAInfo path %s, nix-store --add gave %s", info.Path, got)
	}
}
