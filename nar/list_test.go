package nar_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/store/storetest"
)

// TestListingMatchesNixCopy compares List's JSON with the .ls file that
// `nix copy --to file://…?write-nar-listing=true` writes, for the fixture
// tree plus names that need JSON escaping.
func TestListingMatchesNixCopy(t *testing.T) {
	storetest.RequireDaemon(t)
	root := makeFixture(t)
	for _, name := range []string{"q\"uo\\te", "n\nl\x01\x7f\tr\r", "<&>"} {
		if err := os.WriteFile(filepath.Join(root, "sorted", name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("nix-store", "--add", root).Output()
	if err != nil {
		t.Fatalf("nix-store --add: %v", stderrOf(err))
	}
	storePath := strings.TrimSpace(string(out))
	cache := t.TempDir()
	cmd := exec.Command("nix", "--extra-experimental-features", "nix-command", "copy",
		"--to", "file://"+cache+"?write-nar-listing=true&compression=none", storePath)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nix copy: %v: %s", err, out)
	}
	hash := strings.TrimPrefix(storePath, "/nix/store/")[:32]
	want, err := os.ReadFile(filepath.Join(cache, hash+".ls"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := nar.List(bytes.NewReader(nixDump(t, storePath)))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := l.MarshalJSON()
	if !bytes.Equal(got, want) {
		t.Errorf("listing differs at byte %d:\n got %.300s\nwant %.300s", firstDiff(got, want), got, want)
	}
}

func TestListSingleFile(t *testing.T) {
	l, err := nar.List(bytes.NewReader(narOf(file("abc"))))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := l.MarshalJSON()
	if want := `{"version":1,"root":{"type":"regular","size":3,"narOffset":96}}`; string(got) != want {
		t.Errorf("got %s", got)
	}
}
