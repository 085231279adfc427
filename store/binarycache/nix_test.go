package binarycache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/storetest"
)

// The tests in this file are differential: caches written by nbuild are
// read by real Nix 2.8 (`nix copy --from file://`) and caches written by
// real Nix are read by nbuild.

var nixCommand = []string{"--extra-experimental-features", "nix-command", "--option", "substituters", ""}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

func runErr(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%w\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// nixPathInfo asks real Nix for the info of paths in storeURI.
func nixPathInfo(t *testing.T, storeURI string, paths ...store.Path) map[store.Path]*store.PathInfo {
	t.Helper()
	args := append(slices.Clone(nixCommand), "path-info", "--json", "--store", storeURI)
	for _, p := range paths {
		args = append(args, p.String())
	}
	var infos []struct {
		Path       string   `json:"path"`
		NarHash    string   `json:"narHash"`
		NarSize    uint64   `json:"narSize"`
		References []string `json:"references"`
		Deriver    string   `json:"deriver"`
		CA         string   `json:"ca"`
		Signatures []string `json:"signatures"`
	}
	if err := json.Unmarshal([]byte(run(t, "nix", args...)), &infos); err != nil {
		t.Fatal(err)
	}
	m := map[store.Path]*store.PathInfo{}
	for _, ji := range infos {
		info := &store.PathInfo{Path: store.MustParsePath(ji.Path), NarSize: ji.NarSize, CA: ji.CA, Sigs: ji.Signatures}
		h, err := parseSHA256(ji.NarHash)
		if err != nil {
			t.Fatal(err)
		}
		info.NarHash = h
		for _, r := range ji.References {
			info.References = append(info.References, store.MustParsePath(r))
		}
		store.SortPaths(info.References)
		if ji.Deriver != "" {
			info.Deriver = store.MustParsePath(ji.Deriver)
		}
		m[info.Path] = info
	}
	return m
}

// testPaths are store paths of three kinds, with their infos and NARs as
// real Nix reports and dumps them: two content-addressed paths added to a
// chroot store, and an input-addressed built output with a reference and
// a deriver (built by the local daemon), which Nix imports only when
// signed.
type testPaths struct {
	order []store.Path // dependencies first
	built store.Path   // the input-addressed one
	info  map[store.Path]*store.PathInfo
	nar   map[store.Path][]byte
}

func makeTestPaths(t *testing.T) *testPaths {
	t.Helper()
	storetest.RequireDaemon(t)
	tmp := storetest.TempDir(t)
	srcRoot := filepath.Join(tmp, "src")
	srcStore := "local?root=" + srcRoot

	file := filepath.Join(tmp, "hello.txt")
	os.WriteFile(file, []byte("hello from nbuild binarycache test\n"), 0o644)
	dir := filepath.Join(tmp, "tree")
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "bin", "run"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "big"), bytes.Repeat([]byte("nbuild binary cache "), 50000), 0o644)
	os.Symlink("bin/run", filepath.Join(dir, "link"))
	fileP := store.MustParsePath(run(t, "nix-store", "--store", srcStore, "--add", file))
	dirP := store.MustParsePath(run(t, "nix-store", "--store", srcStore, "--add", dir))

	expr := filepath.Join(tmp, "built.nix")
	os.WriteFile(expr, []byte(`
let dep = builtins.derivation { name = "nbuild-bc-dep"; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "echo dep > $out"]; };
in builtins.derivation { name = "nbuild-bc-top"; system = builtins.currentSystem; builder = "/bin/sh";
  args = ["-c" "/bin/mkdir $out; echo ${dep} > $out/ref; /bin/ln -s ${dep} $out/link"]; }
`), 0o644)
	built := store.MustParsePath(run(t, "nix-build", "--option", "substituters", "", "--no-out-link", expr))
	dep := store.MustParsePath(run(t, "nix-store", "-q", "--references", built.String()))

	tp := &testPaths{order: []store.Path{fileP, dirP, dep, built}, built: built, nar: map[store.Path][]byte{}}
	tp.info = nixPathInfo(t, srcStore, fileP, dirP)
	for p, info := range nixPathInfo(t, "daemon", dep, built) {
		info.Sigs = nil // the local store's own signatures, if any, are not ours
		tp.info[p] = info
	}
	for _, p := range tp.order {
		physical := p.String()
		if p == fileP || p == dirP {
			physical = filepath.Join(srcRoot, p.String())
		}
		out, err := exec.Command("nix-store", "--dump", physical).Output()
		if err != nil {
			t.Fatal(err)
		}
		tp.nar[p] = out
		if uint64(len(out)) != tp.info[p].NarSize {
			t.Fatalf("%s: dumped %d bytes, Nix says NarSize %d", p, len(out), tp.info[p].NarSize)
		}
	}
	return tp
}

func (tp *testPaths) strings(paths ...store.Path) []string {
	if paths == nil {
		paths = tp.order
	}
	var s []string
	for _, p := range paths {
		s = append(s, p.String())
	}
	return s
}

func generateKey(t *testing.T, name string) (secretFile string, public string) {
	t.Helper()
	dir := storetest.TempDir(t)
	secretFile, pubFile := filepath.Join(dir, "sk"), filepath.Join(dir, "pk")
	run(t, "nix-store", "--generate-binary-cache-key", name, secretFile, pubFile)
	pub, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	return secretFile, strings.TrimSpace(string(pub))
}

// nixCopyFrom runs real `nix copy --from file://cache --to local?root=dst`
// trusting only publicKey.
func nixCopyFrom(cache, dst, publicKey string, paths []string) error {
	args := append(slices.Clone(nixCommand), "copy", "--option", "trusted-public-keys", publicKey,
		"--from", "file://"+cache, "--to", "local?root="+dst)
	_, err := runErr("nix", append(args, paths...)...)
	return err
}

func TestNixReadsOurCache(t *testing.T) {
	storetest.RequireNix(t)
	storetest.RequireTools(t, "xz", "zstd") // checkMultiStream tests the files with them
	tp := makeTestPaths(t)
	skFile, pub := generateKey(t, "nbuild-test-1")
	ctx := context.Background()

	for _, comp := range compressions {
		t.Run(comp, func(t *testing.T) {
			cacheDir := storetest.TempDir(t)
			// Small chunks make the 1 MB NAR of tp.order[1] several
			// concatenated xz streams or zstd frames, as a big NAR is.
			c, err := Open(cacheDir, Options{Compression: comp, SecretKeyFile: skFile, WriteNarListing: true, ChunkSize: 256 << 10})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tp.order {
				if err := c.AddToStoreNar(ctx, tp.info[p], bytes.NewReader(tp.nar[p])); err != nil {
					t.Fatalf("AddToStoreNar(%s): %v", p, err)
				}
			}
			if comp != "none" {
				checkMultiStream(t, c, tp.order[1], comp)
			}
			dst := storetest.TempDir(t)
			if err := nixCopyFrom(cacheDir, dst, pub, tp.strings()); err != nil {
				t.Fatalf("nix copy --from our cache: %v", err)
			}
			dstStore := "local?root=" + dst
			got := nixPathInfo(t, dstStore, tp.order...)
			for _, p := range tp.order {
				storetest.CheckInfo(t, got[p], tp.info[p])
				if h := run(t, "nix-store", "--store", dstStore, "-q", "--hash", p.String()); h != tp.info[p].NarHashString() {
					t.Errorf("%s: nix-store -q --hash = %s, want %s", p, h, tp.info[p].NarHashString())
				}
				run(t, "nix-store", "--store", dstStore, "--verify-path", p.String())
			}
		})
	}

	t.Run("wrong key rejected by Nix", func(t *testing.T) {
		cacheDir := storetest.TempDir(t)
		c, err := Open(cacheDir, Options{Compression: "zstd", SecretKeyFile: skFile})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range tp.order {
			if err := c.AddToStoreNar(ctx, tp.info[p], bytes.NewReader(tp.nar[p])); err != nil {
				t.Fatal(err)
			}
		}
		_, otherPub := generateKey(t, "nbuild-test-1") // same name, other key
		dst := storetest.TempDir(t)
		err = nixCopyFrom(cacheDir, dst, otherPub, tp.strings(tp.built))
		if err == nil || !strings.Contains(err.Error(), "signature") {
			t.Fatalf("nix copy of a path signed by an untrusted key: %v", err)
		}
		assertNotValid(t, dst, tp.built)
		// The same cache read by nbuild with the other key trusted.
		otherKey, _ := ParsePublicKey(otherPub)
		r, _ := Open(cacheDir, Options{CheckSigs: true, TrustedKeys: []PublicKey{otherKey}})
		if _, err := r.QueryPathInfo(ctx, tp.built); !errors.Is(err, ErrSignature) {
			t.Errorf("nbuild: err = %v, want ErrSignature", err)
		}
	})

	t.Run("corrupt NAR rejected by Nix", func(t *testing.T) {
		cacheDir := storetest.TempDir(t)
		c, err := Open(cacheDir, Options{Compression: "none", SecretKeyFile: skFile})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range tp.order {
			if err := c.AddToStoreNar(ctx, tp.info[p], bytes.NewReader(tp.nar[p])); err != nil {
				t.Fatal(err)
			}
		}
		ni, err := c.NarInfo(ctx, tp.built)
		if err != nil {
			t.Fatal(err)
		}
		narFile := filepath.Join(cacheDir, ni.URL)
		data, _ := os.ReadFile(narFile)
		i := bytes.Index(data, []byte("nbuild-bc-dep\n")) // inside the file "ref": still a well-formed NAR
		if i < 0 {
			t.Fatal("file contents not found in the NAR")
		}
		data[i] ^= 0x20
		os.WriteFile(narFile, data, 0o644)

		dst := storetest.TempDir(t)
		err = nixCopyFrom(cacheDir, dst, pub, tp.strings(tp.built))
		if err == nil || !strings.Contains(err.Error(), "hash mismatch") {
			t.Fatalf("nix copy of a corrupt NAR: %v", err)
		}
		assertNotValid(t, dst, tp.built)
		if err := c.NarFromPath(ctx, tp.built, io.Discard); !errors.Is(err, ErrHashMismatch) {
			t.Errorf("nbuild NarFromPath: err = %v, want ErrHashMismatch", err)
		}
	})
}

// checkMultiStream checks that the NAR file of p is several concatenated
// streams (frames) and that the reference tool (xz -t, zstd -t) accepts it.
func checkMultiStream(t *testing.T, c *Cache, p store.Path, comp string) {
	t.Helper()
	ni, err := c.NarInfo(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(c.Dir(), ni.URL)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	magic := map[string]string{"xz": "\xfd7zXZ\x00", "zstd": "\x28\xb5\x2f\xfd"}[comp]
	if n := bytes.Count(data, []byte(magic)); n < 2 {
		t.Errorf("%s: %d %s stream(s), want several", file, n, comp)
	}
	run(t, comp, "-t", file)
}

func assertNotValid(t *testing.T, root string, p store.Path) {
	t.Helper()
	if _, err := runErr("nix-store", "--store", "local?root="+root, "--check-validity", p.String()); err == nil {
		t.Errorf("%s is valid in %s after a rejected copy", p, root)
	}
}

func TestWeReadNixCache(t *testing.T) {
	storetest.RequireNix(t)
	tp := makeTestPaths(t)
	skFile, pub := generateKey(t, "nix-written-1")
	pk, err := ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, comp := range compressions {
		t.Run(comp, func(t *testing.T) {
			cacheDir := storetest.TempDir(t)
			// Only the daemon-store paths: `nix copy` copies from one store.
			paths := []store.Path{tp.order[2], tp.built}
			url := fmt.Sprintf("file://%s?compression=%s&write-nar-listing=true&secret-key=%s", cacheDir, comp, skFile)
			run(t, "nix", append(slices.Clone(nixCommand), append([]string{"copy", "--to", url}, tp.strings(paths...)...)...)...)

			c, err := Open(cacheDir, Options{CheckSigs: true, TrustedKeys: []PublicKey{pk}})
			if err != nil {
				t.Fatal(err)
			}
			valid, err := c.QueryValidPaths(ctx, tp.order, false)
			if err != nil || !slices.Equal(valid, paths) {
				t.Fatalf("QueryValidPaths = %v, %v; want %v", valid, err, paths)
			}
			for _, p := range paths {
				file := filepath.Join(cacheDir, p.HashPart()+".narinfo")
				data, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				ni, err := ParseNarInfo(data)
				if err != nil {
					t.Fatal(err)
				}
				if got := ni.AppendText(nil); !bytes.Equal(got, data) {
					t.Errorf("%s: narinfo does not round-trip:\n got %q\nwant %q", p, got, data)
				}
				info, err := c.QueryPathInfo(ctx, p)
				if err != nil {
					t.Fatal(err)
				}
				storetest.CheckInfo(t, info, tp.info[p])
				var buf bytes.Buffer
				if err := c.NarFromPath(ctx, p, &buf); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(buf.Bytes(), tp.nar[p]) {
					t.Errorf("%s: NarFromPath differs from nix-store --dump", p)
				}
				ls, err := os.ReadFile(filepath.Join(cacheDir, p.HashPart()+".ls"))
				if err != nil {
					t.Fatal(err)
				}
				l, err := nar.List(bytes.NewReader(tp.nar[p]))
				if err != nil {
					t.Fatal(err)
				}
				if got := l.AppendJSON(nil); !bytes.Equal(got, ls) {
					t.Errorf("%s: listing %s, Nix wrote %s", p, got, ls)
				}
			}

			// Tampering with the signature or the signed fields is caught.
			file := filepath.Join(cacheDir, tp.built.HashPart()+".narinfo")
			data, _ := os.ReadFile(file)
			for _, tamper := range []struct{ old, new string }{
				{"Sig: nix-written-1:", "Sig: nix-written-1:A"},
				{"NarSize: ", "NarSize: 1"},
			} {
				os.WriteFile(file, []byte(strings.Replace(string(data), tamper.old, tamper.new, 1)), 0o644)
				if _, err := c.QueryPathInfo(ctx, tp.built); !errors.Is(err, ErrSignature) {
					t.Errorf("tampered %q: err = %v, want ErrSignature", tamper.new, err)
				}
			}
			os.WriteFile(file, data, 0o644)

			// Our writer adds to a cache Nix wrote, skipping what is there.
			w, err := Open(cacheDir, Options{Compression: "zstd"})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tp.order {
				if err := w.AddToStoreNar(ctx, tp.info[p], bytes.NewReader(tp.nar[p])); err != nil {
					t.Fatal(err)
				}
			}
			if after, _ := os.ReadFile(file); !bytes.Equal(after, data) {
				t.Error("a narinfo Nix wrote was rewritten")
			}
		})
	}
}
