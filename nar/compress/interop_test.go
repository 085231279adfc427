package compress_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/nar/compress"
	"github.com/nbuild/nbuild/store/storetest"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// xzCases are the shapes of xz output that matter to a decoder: no
// stream, one stream, several concatenated streams (the last one short),
// dictionaries of several levels capped by the chunk, and concurrency.
func xzCases() []struct {
	name string
	data []byte
	opts compress.Options
} {
	var cs []struct {
		name string
		data []byte
		opts compress.Options
	}
	for _, size := range []int{0, 1, 64<<10 - 1, 64 << 10, 300<<10 + 7} {
		for _, level := range []int{0, 1, 6, 9} {
			for _, conc := range []int{1, 2} {
				cs = append(cs, struct {
					name string
					data []byte
					opts compress.Options
				}{
					fmt.Sprintf("size%d/level%d/c%d", size, level, conc),
					sample(size),
					compress.Options{Level: level, Concurrency: conc, ChunkSize: 64 << 10},
				})
			}
		}
	}
	return cs
}

// TestXZLibarchive: libarchive, which Nix 2.8 decompresses binary-cache
// NARs with, reads our concatenated xz streams (bsdcat: Debian package
// libarchive-tools, which scripts/test-deps.sh installs). It is the only
// check that Nix 2.8's decompressor accepts them, so CI requires it.
func TestXZLibarchive(t *testing.T) {
	storetest.RequireTools(t, "bsdcat")
	for _, c := range xzCases() {
		z := compressBytes(t, "xz", c.data, c.opts)
		cmd := exec.Command("bsdcat")
		cmd.Stdin = bytes.NewReader(z)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: bsdcat: %v: %s", c.name, err, stderr.Bytes())
		}
		if !bytes.Equal(out, c.data) {
			t.Errorf("%s: bsdcat gave %d bytes, want %d", c.name, len(out), len(c.data))
		}
		xz := exec.Command("xz", "-d", "-c")
		xz.Stdin = bytes.NewReader(z)
		if out, err := xz.Output(); err != nil || !bytes.Equal(out, c.data) {
			t.Errorf("%s: xz -d: %v, %d bytes", c.name, err, len(out))
		}
	}
}

// TestNixReadsXZCache: real Nix reads a NAR we compressed as several xz
// streams from a file:// binary cache. Nix writes the cache uncompressed,
// then the NAR is swapped for ours and the .narinfo's URL, Compression,
// FileHash and FileSize are rewritten; `nix store dump-path` from the
// cache must give the original NAR back.
func TestNixReadsXZCache(t *testing.T) {
	storetest.RequireDaemon(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "xz-interop-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	data := sample(700<<10 + 3)
	if err := os.WriteFile(filepath.Join(src, "blob"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "small"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) []byte {
		t.Helper()
		cmd := exec.Command(name, args...)
		// A fresh cache directory has a fresh URL, but keep Nix's
		// narinfo disk cache out of the user's anyway.
		cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(tmp, "xdg"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.Bytes())
		}
		return out
	}
	path := strings.TrimSpace(string(run("nix-store", "--add", src)))
	cache := filepath.Join(tmp, "cache")
	nixCmd := []string{"--extra-experimental-features", "nix-command", "--option", "substituters", ""}
	run("nix", append(nixCmd, "copy", "--to", "file://"+cache+"?compression=none", path)...)

	var narBuf bytes.Buffer
	if err := nar.DumpPath(&narBuf, path); err != nil {
		t.Fatal(err)
	}
	want := narBuf.Bytes()
	hashPart := strings.SplitN(filepath.Base(path), "-", 2)[0]
	infoPath := filepath.Join(cache, hashPart+".narinfo")
	info0, err := os.ReadFile(infoPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, conc := range []int{1, 2} {
		// 64 KiB chunks: eleven concatenated streams.
		z := compressBytes(t, "xz", want, compress.Options{Concurrency: conc, ChunkSize: 64 << 10})
		sum := sha256.Sum256(z)
		fileHash := nixbase32.EncodeToString(sum[:])
		url := "nar/" + fileHash + ".nar.xz"
		if err := os.WriteFile(filepath.Join(cache, url), z, 0o644); err != nil {
			t.Fatal(err)
		}
		info := string(info0)
		for field, val := range map[string]string{
			"URL": url, "Compression": "xz",
			"FileHash": "sha256:" + fileHash, "FileSize": fmt.Sprint(len(z)),
		} {
			info = regexp.MustCompile(`(?m)^`+field+`: .*$`).ReplaceAllString(info, field+": "+val)
		}
		if err := os.WriteFile(infoPath, []byte(info), 0o644); err != nil {
			t.Fatal(err)
		}
		got := run("nix", append(nixCmd, "store", "dump-path", "--store", "file://"+cache, path)...)
		if !bytes.Equal(got, want) {
			t.Errorf("concurrency %d: nix store dump-path from the xz cache: %d bytes, want the %d of the NAR", conc, len(got), len(want))
		}
	}
}

// TestXZEveryLevel: every level at its default chunk and dictionary
// reads back, with our reader and xz -d. ulikunitz's BinaryTree matcher,
// which levels 4-9 used to get, wrote matches beyond the dictionary on
// small real NARs ("Compressed data is corrupt" from xz, "Lzma library
// error: Corrupted input data" from Nix); a NAR of this directory did.
func TestXZEveryLevel(t *testing.T) {
	var narBuf bytes.Buffer
	if err := nar.DumpPath(&narBuf, "."); err != nil { // this package's sources
		t.Fatal(err)
	}
	data := append(narBuf.Bytes(), sample(100<<10)...)
	_, xzErr := exec.LookPath("xz")
	for level := range 10 {
		z := compressBytes(t, "xz", data, compress.Options{Level: level, Concurrency: 1})
		if back := decompress(t, "xz", z); !bytes.Equal(back, data) {
			t.Errorf("level %d: round trip differs", level)
		}
		if xzErr != nil {
			continue // TestExternalTools requires xz under CI
		}
		cmd := exec.Command("xz", "-d", "-c")
		cmd.Stdin = bytes.NewReader(z)
		if out, err := cmd.CombinedOutput(); err != nil || !bytes.Equal(out, data) {
			t.Errorf("level %d: xz -d: %v %.200s", level, err, out)
		}
	}
}
