package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store/storetest"
)

// narTree makes a tree with every entry kind and names that sort as Nix
// sorts them ("B" < "_" < "a" < "été").
func narTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "tree")
	for _, d := range []string{"sub/deeper", "empty"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{"B": "b", "_": "", "a": "1234567", "été": "12345678", "sub/deeper/x": "123456789"}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"sub/l": "../a", "dangling": "/nowhere/at/all"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func runIn(t *testing.T, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	env := &cmdEnv{stdin: bytes.NewReader(stdin), stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	code := runMain(context.Background(), env, args)
	return stdout.String(), stderr.String(), code
}

func TestNarAgainstNix(t *testing.T) {
	storetest.RequireNix(t)
	tree := narTree(t)
	want, err := exec.Command("nix-store", "--dump", tree).Output()
	if err != nil {
		t.Fatal(err)
	}
	dump, errOut, code := runIn(t, nil, "nar", "dump", tree)
	if code != 0 || dump != string(want) {
		t.Fatalf("nar dump differs from nix-store --dump (exit %d, %s)", code, errOut)
	}
	hash, _, _ := runIn(t, nil, "nar", "hash", tree)
	nixHash, err := exec.Command("nix-hash", "--type", "sha256", "--base32", tree).Output()
	if err != nil {
		t.Fatal(err)
	}
	if hash != "sha256:"+string(nixHash) {
		t.Errorf("nar hash %q, nix-hash %q", hash, nixHash)
	}
	narFile := filepath.Join(t.TempDir(), "t.nar")
	if err := os.WriteFile(narFile, want, 0o644); err != nil {
		t.Fatal(err)
	}
	ls, _, _ := runIn(t, want, "nar", "ls")
	nixLs, err := exec.Command("nix", "--extra-experimental-features", "nix-command", "nar", "ls", "-lR", narFile, "/").Output()
	if err != nil {
		t.Fatal(err)
	}
	if ls != string(nixLs) {
		t.Errorf("nar ls:\n%s\nnix nar ls -lR:\n%s", ls, nixLs)
	}
	// Restoring nix-store --dump output gives the tree back: its re-dump
	// by Nix equals the original NAR.
	out := filepath.Join(t.TempDir(), "restored")
	if _, errOut, code := runIn(t, want, "nar", "restore", out); code != 0 {
		t.Fatalf("restore: exit %d %s", code, errOut)
	}
	again, err := exec.Command("nix-store", "--dump", out).Output()
	if err != nil || !bytes.Equal(again, want) {
		t.Errorf("restored tree dumps differently (%v)", err)
	}
}

func TestNarErrors(t *testing.T) {
	tree := narTree(t)
	dump, _, _ := runIn(t, nil, "nar", "dump", tree)
	out := filepath.Join(t.TempDir(), "out")
	_, errOut, code := runIn(t, []byte(dump[:len(dump)/2]), "nar", "restore", out)
	if code != 1 || errOut == "" {
		t.Errorf("truncated NAR: exit %d %q", code, errOut)
	}
	if _, err := os.Lstat(out); !os.IsNotExist(err) {
		t.Errorf("a failed restore left %s behind", out)
	}
	if _, _, code := runIn(t, nil, "nar", "frobnicate"); code != 2 {
		t.Errorf("unknown subcommand: exit %d, want 2", code)
	}
	if _, _, code := runIn(t, nil, "nar"); code != 2 {
		t.Errorf("no subcommand: exit %d, want 2", code)
	}
	if o, _, code := runIn(t, nil, "nar", "--help"); code != 0 || !strings.Contains(o, "Example:") {
		t.Errorf("--help: exit %d", code)
	}
	js, _, code := runIn(t, []byte(dump), "nar", "ls", "--json")
	if code != 0 || !strings.HasPrefix(js, `{"version":1,"root":{"type":"directory"`) {
		t.Errorf("ls --json: %q", js)
	}
}

// TestNarCompress: what nar compress writes, xz -d / zstd -d and nar
// decompress read back, across several chunks and both job counts.
func TestNarCompress(t *testing.T) {
	storetest.RequireTools(t, "xz", "zstd")
	tree := narTree(t)
	dump, _, _ := runIn(t, nil, "nar", "dump", tree)
	data := bytes.Repeat([]byte(dump), 200) // several 64 KiB chunks
	for _, algo := range []string{"xz", "zstd", "none"} {
		for _, jobs := range []string{"1", "2"} {
			z, errOut, code := runIn(t, data, "nar", "compress", algo, "-j", jobs, "--chunk-size", "65536", "--level", "1")
			if code != 0 {
				t.Fatalf("%s -j%s: exit %d %s", algo, jobs, code, errOut)
			}
			back, errOut, code := runIn(t, []byte(z), "nar", "decompress", algo)
			if code != 0 || back != string(data) {
				t.Errorf("%s -j%s: decompress: exit %d %s, %d bytes", algo, jobs, code, errOut, len(back))
			}
			if algo == "none" {
				continue
			}
			cmd := exec.Command(algo, "-d", "-c")
			cmd.Stdin = strings.NewReader(z)
			if out, err := cmd.Output(); err != nil || !bytes.Equal(out, data) {
				t.Errorf("%s -d of nar compress -j%s: %v, %d bytes", algo, jobs, err, len(out))
			}
		}
	}
	if _, _, code := runIn(t, nil, "nar", "compress", "lz5"); code != 1 {
		t.Errorf("unknown algorithm: exit %d, want 1", code)
	}
	if _, _, code := runIn(t, []byte("not xz"), "nar", "decompress", "xz"); code != 1 {
		t.Errorf("corrupt input: exit %d, want 1", code)
	}
}
