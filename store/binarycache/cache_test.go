package binarycache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/storetest"
)

var compressions = []string{"none", "zstd", "xz"}

func openTestCache(t *testing.T, opts Options) *Cache {
	t.Helper()
	c, err := Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConformance(t *testing.T) {
	for _, comp := range compressions {
		t.Run(comp, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) storetest.Store {
				return openTestCache(t, Options{Compression: comp, WriteNarListing: true})
			})
		})
	}
}

// files lists the cache's files relative to its root, skipping nothing.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func TestAddToStoreNarLayout(t *testing.T) {
	ctx := context.Background()
	sk, pk := testKeys(t)
	for _, comp := range compressions {
		t.Run(comp, func(t *testing.T) {
			c := openTestCache(t, Options{Compression: comp, SecretKey: sk, WriteNarListing: true, CheckSigs: true, TrustedKeys: []PublicKey{pk}})
			o := storetest.NewObject(t, "layout", nil)
			if err := c.AddToStoreNar(ctx, o.Info, bytes.NewReader(o.NAR)); err != nil {
				t.Fatal(err)
			}
			ni, err := c.NarInfo(ctx, o.Info.Path)
			if err != nil {
				t.Fatal(err)
			}
			ext := map[string]string{"none": "", "zstd": ".zst", "xz": ".xz"}[comp]
			if !strings.HasPrefix(ni.URL, "nar/") || !strings.HasSuffix(ni.URL, ".nar"+ext) || ni.Compression != comp {
				t.Errorf("URL %q, Compression %q", ni.URL, ni.Compression)
			}
			narFile, err := os.ReadFile(filepath.Join(c.Dir(), ni.URL))
			if err != nil {
				t.Fatal(err)
			}
			if uint64(len(narFile)) != ni.FileSize {
				t.Errorf("FileSize %d, file has %d bytes", ni.FileSize, len(narFile))
			}
			if want := "nar/" + nixHash(narFile) + ".nar" + ext; ni.URL != want {
				t.Errorf("URL %q, want %q (named by FileHash)", ni.URL, want)
			}
			if len(ni.Sigs) != 1 || !strings.HasPrefix(ni.Sigs[0], "test-key-1:") {
				t.Errorf("Sigs = %v", ni.Sigs)
			}
			l, err := nar.List(bytes.NewReader(o.NAR))
			if err != nil {
				t.Fatal(err)
			}
			ls, err := os.ReadFile(filepath.Join(c.Dir(), o.Info.Path.HashPart()+".ls"))
			if err != nil || !bytes.Equal(ls, l.AppendJSON(nil)) {
				t.Errorf(".ls = %s, %v", ls, err)
			}
			for _, f := range files(t, c.Dir()) {
				if strings.Contains(f, ".tmp") {
					t.Errorf("temporary file left: %s", f)
				}
				fi, _ := os.Stat(filepath.Join(c.Dir(), f))
				if fi.Mode().Perm() != 0o644 {
					t.Errorf("%s has mode %v, want 0644", f, fi.Mode())
				}
			}
		})
	}
}

func nixHash(b []byte) string {
	hw := nar.NewHashingWriter(nil)
	hw.Write(b)
	s := hw.Sum()
	ni := NarInfo{NarHash: s}
	text := string(ni.AppendText(nil))
	i := strings.Index(text, "NarHash: sha256:") + len("NarHash: sha256:")
	return text[i : i+52]
}

func TestAddToStoreNarRejects(t *testing.T) {
	ctx := context.Background()
	a := storetest.NewObject(t, "a", nil)
	b := storetest.NewObject(t, "b", []store.Path{a.Info.Path})

	t.Run("missing reference", func(t *testing.T) {
		c := openTestCache(t, Options{Compression: "zstd"})
		err := c.AddToStoreNar(ctx, b.Info, bytes.NewReader(b.NAR))
		if !errors.Is(err, ErrMissingReference) || !strings.Contains(err.Error(), a.Info.Path.String()) {
			t.Fatalf("err = %v, want ErrMissingReference naming %s", err, a.Info.Path)
		}
		if got := files(t, c.Dir()); len(got) != 1 || got[0] != "nix-cache-info" {
			t.Fatalf("files written: %v", got)
		}
	})

	cases := []struct {
		name string
		info func() *store.PathInfo
		nar  []byte
	}{
		{"wrong hash", func() *store.PathInfo { i := *a.Info; i.NarHash[0] ^= 1; return &i }, a.NAR},
		{"NAR shorter than NarSize", func() *store.PathInfo { i := *a.Info; i.NarSize += 8; return &i }, a.NAR},
		{"NAR longer than NarSize", func() *store.PathInfo { i := *a.Info; i.NarSize -= 8; return &i }, a.NAR},
		{"truncated NAR", func() *store.PathInfo { return a.Info }, a.NAR[:len(a.NAR)/2]},
		{"garbage of the right size", func() *store.PathInfo { return a.Info }, bytes.Repeat([]byte{7}, len(a.NAR))},
	}
	for _, tc := range cases {
		for _, listing := range []bool{false, true} {
			name := tc.name
			if listing {
				name += " with listing"
			}
			t.Run(name, func(t *testing.T) {
				c := openTestCache(t, Options{Compression: "zstd", WriteNarListing: listing})
				info := tc.info()
				err := c.AddToStoreNar(ctx, info, bytes.NewReader(tc.nar))
				if err == nil {
					t.Fatal("accepted")
				}
				if !strings.Contains(tc.name, "garbage") && !errors.Is(err, ErrHashMismatch) {
					t.Errorf("err = %v, want ErrHashMismatch", err)
				}
				if got := files(t, c.Dir()); len(got) != 1 || got[0] != "nix-cache-info" {
					t.Fatalf("files left after a rejected NAR: %v", got)
				}
				if valid, _ := c.QueryValidPaths(ctx, []store.Path{info.Path}, false); len(valid) != 0 {
					t.Fatal("rejected path is valid")
				}
			})
		}
	}
}

// failingReader fails the test if anything reads it.
type failingReader struct{ t *testing.T }

func (r failingReader) Read([]byte) (int, error) {
	r.t.Error("NAR of a present path was read")
	return 0, io.ErrUnexpectedEOF
}

func TestAddPresentPathSkipsNar(t *testing.T) {
	ctx := context.Background()
	c := openTestCache(t, Options{Compression: "none"})
	a := storetest.NewObject(t, "a", nil)
	if err := c.AddToStoreNar(ctx, a.Info, bytes.NewReader(a.NAR)); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(c.narInfoFile(a.Info.Path))
	other := *a.Info
	other.Sigs = []string{"x:y"}
	if err := c.AddToStoreNar(ctx, &other, failingReader{t}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(c.narInfoFile(a.Info.Path))
	if !bytes.Equal(before, after) {
		t.Error("narinfo of a present path rewritten")
	}
}

func TestNarFromPathCorrupt(t *testing.T) {
	ctx := context.Background()
	a := storetest.NewObject(t, "a", nil)
	type corruption struct {
		name     string
		damage   func(data []byte) []byte
		noFile   bool // strip FileHash/FileSize from the narinfo first
		fileErr  bool // want *FileMismatchError, else *HashMismatchError
		anyError bool // compressed and no FileHash: the decompressor may fail first
		badNAR   bool // the NAR itself is damaged, not only its file's end
	}
	for _, comp := range compressions {
		flip := func(data []byte) []byte {
			if comp == "none" {
				data[len(data)-40] ^= 1 // inside the file contents: still a well-formed NAR
			} else {
				data[len(data)/2] ^= 1
			}
			return data
		}
		cases := []corruption{
			{name: "flipped bit", damage: flip, fileErr: true, badNAR: true},
			{name: "trailing garbage", damage: func(d []byte) []byte { return append(d, "junk"...) }, fileErr: true},
			{name: "truncated", damage: func(d []byte) []byte { return d[:len(d)-5] }, fileErr: true},
			{name: "flipped bit without FileHash", damage: flip, noFile: true, anyError: comp != "none", badNAR: true},
		}
		for _, tc := range cases {
			t.Run(comp+"/"+tc.name, func(t *testing.T) {
				c := openTestCache(t, Options{Compression: comp})
				if err := c.AddToStoreNar(ctx, a.Info, bytes.NewReader(a.NAR)); err != nil {
					t.Fatal(err)
				}
				ni, _ := c.NarInfo(ctx, a.Info.Path)
				if tc.noFile {
					ni.HasFileHash, ni.FileSize = false, 0
					os.WriteFile(c.narInfoFile(a.Info.Path), ni.AppendText(nil), 0o644)
				}
				file := filepath.Join(c.Dir(), ni.URL)
				data, _ := os.ReadFile(file)
				os.WriteFile(file, tc.damage(data), 0o644)

				// A consumer that verifies the NAR it is given (here a
				// second cache) ends without the path. (When only the
				// file's end is damaged the NAR it got may be whole and
				// right.)
				dst := openTestCache(t, Options{Compression: "none"})
				pr, pw := io.Pipe()
				addErr := make(chan error, 1)
				go func() {
					err := dst.AddToStoreNar(ctx, a.Info, pr)
					io.Copy(io.Discard, pr) // what follows the NAR it read
					addErr <- err
				}()
				err := c.NarFromPath(ctx, a.Info.Path, pw)
				pw.CloseWithError(errors.Join(err, io.ErrUnexpectedEOF))
				<-addErr
				if valid, _ := dst.QueryValidPaths(ctx, []store.Path{a.Info.Path}, false); tc.badNAR && len(valid) != 0 {
					t.Error("the consumer registered a path NarFromPath failed")
				}
				var fe *FileMismatchError
				var he *HashMismatchError
				switch {
				case err == nil:
					t.Fatal("corrupt NAR accepted")
				case tc.anyError:
				case !errors.Is(err, ErrHashMismatch):
					t.Fatalf("err = %v, want ErrHashMismatch", err)
				case tc.fileErr && !errors.As(err, &fe):
					t.Fatalf("err = %v, want a *FileMismatchError", err)
				case !tc.fileErr && !errors.As(err, &he):
					t.Fatalf("err = %v, want a *HashMismatchError", err)
				}
			})
		}
	}
}

func TestTruncatedNarInfo(t *testing.T) {
	ctx := context.Background()
	c := openTestCache(t, Options{Compression: "none"})
	a := storetest.NewObject(t, "a", nil)
	if err := c.AddToStoreNar(ctx, a.Info, bytes.NewReader(a.NAR)); err != nil {
		t.Fatal(err)
	}
	file := c.narInfoFile(a.Info.Path)
	data, _ := os.ReadFile(file)
	for _, n := range []int{0, 30, len(data) / 2, len(data) - 1} {
		os.WriteFile(file, data[:n], 0o644)
		_, err := c.QueryPathInfo(ctx, a.Info.Path)
		if !errors.Is(err, ErrCorruptNarInfo) || !strings.Contains(err.Error(), file) {
			t.Errorf("narinfo cut to %d bytes: err = %v, want ErrCorruptNarInfo naming the file", n, err)
		}
		if err := c.NarFromPath(ctx, a.Info.Path, io.Discard); !errors.Is(err, ErrCorruptNarInfo) {
			t.Errorf("NarFromPath with narinfo cut to %d bytes: err = %v", n, err)
		}
	}
}

// TestConcurrentAdds adds paths from many goroutines at once, each path
// four times, as a copy engine running several adds may: every add
// succeeds, and each path ends with one NAR file, one signature and a
// narinfo matching its NAR.
func TestConcurrentAdds(t *testing.T) {
	ctx := context.Background()
	sk, pk := testKeys(t)
	c := openTestCache(t, Options{Compression: "zstd", SecretKey: sk, WriteNarListing: true, CheckSigs: true, TrustedKeys: []PublicKey{pk}})
	var objs []*storetest.Object
	for i := range 8 {
		objs = append(objs, storetest.NewObject(t, fmt.Sprintf("leaf%d", i), nil))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(objs))
	for range 4 {
		for _, o := range objs {
			wg.Go(func() { errs <- c.AddToStoreNar(ctx, o.Info, bytes.NewReader(o.NAR)) })
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	narFiles := 0
	for _, f := range files(t, c.Dir()) {
		if strings.HasPrefix(f, "nar/") {
			narFiles++
		}
		if strings.Contains(f, ".tmp") {
			t.Errorf("temporary file left: %s", f)
		}
	}
	if narFiles != len(objs) {
		t.Errorf("%d NAR files for %d paths", narFiles, len(objs))
	}
	for _, o := range objs {
		var buf bytes.Buffer
		if err := c.NarFromPath(ctx, o.Info.Path, &buf); err != nil || !bytes.Equal(buf.Bytes(), o.NAR) {
			t.Errorf("%s: %v", o.Info.Path, err)
		}
		ni, err := c.NarInfo(ctx, o.Info.Path)
		if err != nil || len(ni.Sigs) != 1 {
			t.Errorf("%s: sigs %v, %v", o.Info.Path, ni.Sigs, err)
		}
	}
}

func TestReadChecks(t *testing.T) {
	ctx := context.Background()
	sk, pk := testKeys(t)
	dir := t.TempDir()
	w, err := Open(dir, Options{Compression: "none"})
	if err != nil {
		t.Fatal(err)
	}
	a := storetest.NewObject(t, "a", nil)
	unsigned := *a.Info
	unsigned.CA = "" // not content-addressed: needs a signature
	if err := w.AddToStoreNar(ctx, &unsigned, bytes.NewReader(a.NAR)); err != nil {
		t.Fatal(err)
	}
	ws, err := Open(dir, Options{Compression: "none", SecretKey: sk})
	if err != nil {
		t.Fatal(err)
	}
	b := storetest.NewObject(t, "b", nil)
	bInfo := *b.Info
	bInfo.CA = ""
	if err := ws.AddToStoreNar(ctx, &bInfo, bytes.NewReader(b.NAR)); err != nil {
		t.Fatal(err)
	}

	r, err := Open(dir, Options{CheckSigs: true, TrustedKeys: []PublicKey{pk}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.QueryPathInfo(ctx, unsigned.Path); !errors.Is(err, ErrSignature) {
		t.Errorf("unsigned path: err = %v, want ErrSignature", err)
	}
	if err := r.NarFromPath(ctx, unsigned.Path, io.Discard); !errors.Is(err, ErrSignature) {
		t.Errorf("NarFromPath of unsigned path: err = %v, want ErrSignature", err)
	}
	var buf bytes.Buffer
	if err := r.NarFromPath(ctx, bInfo.Path, &buf); err != nil || !bytes.Equal(buf.Bytes(), b.NAR) {
		t.Errorf("signed path: %v", err)
	}

	// A narinfo whose URL leaves the cache is refused.
	evil := filepath.Join(dir, bInfo.Path.HashPart()+".narinfo")
	data, _ := os.ReadFile(evil)
	ni, _ := ParseNarInfo(data)
	ni.URL = "../../etc/passwd"
	os.WriteFile(evil, ni.AppendText(nil), 0o644)
	if err := r.NarFromPath(ctx, bInfo.Path, io.Discard); !errors.Is(err, ErrCorruptNarInfo) {
		t.Errorf("URL outside the cache: err = %v", err)
	}
	// A narinfo filed under another path's name is refused.
	os.WriteFile(evil, []byte(strings.Replace(string(data), bInfo.Path.String(), unsigned.Path.String(), 1)), 0o644)
	if _, err := r.QueryPathInfo(ctx, bInfo.Path); !errors.Is(err, ErrCorruptNarInfo) {
		t.Errorf("narinfo for another path: err = %v", err)
	}
}

func TestOpenChecksStoreDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /gnu/store\n"), 0o644)
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "/gnu/store") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Open(t.TempDir(), Options{Compression: "bzip2"}); err == nil {
		t.Fatal("bzip2 accepted for writing")
	}
	if _, err := Open(t.TempDir(), Options{SecretKeyFile: "testdata/nope"}); err == nil {
		t.Fatal("missing secret key file accepted")
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		url     string
		dir     string
		want    Options
		wantErr string
	}{
		{url: "file:///tmp/c", dir: "/tmp/c"},
		{url: "file:///tmp/c?compression=zstd&secret-key=/k&write-nar-listing=1", dir: "/tmp/c",
			want: Options{Compression: "zstd", SecretKeyFile: "/k", WriteNarListing: true}},
		{url: "file:///tmp/c?compression=xz&compression-level=9&parallel-compression=true&write-nar-listing=false", dir: "/tmp/c",
			want: Options{Compression: "xz", CompressionLevel: 9}},
		{url: "file:///tmp/c?compression-level=-1", dir: "/tmp/c"},
		{url: "file:///tmp/c?compression=br", wantErr: "not supported"},
		{url: "file:///tmp/c?foo=1", wantErr: "unknown setting"},
		{url: "file:///tmp/c?write-nar-listing=yes", wantErr: "Boolean"},
		{url: "file:///tmp/c?compression-level=x", wantErr: "integer"},
		{url: "http://cache/x", wantErr: "not a file:///DIR URL"},
		{url: "file://host/x", wantErr: "not a file:///DIR URL"},
		{url: "/tmp/c", wantErr: "not a file:///DIR URL"},
	}
	for _, tt := range tests {
		dir, opts, err := ParseURL(tt.url)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseURL(%q) err = %v, want %q", tt.url, err, tt.wantErr)
			}
			continue
		}
		if err != nil || dir != tt.dir || opts.Compression != tt.want.Compression || opts.SecretKeyFile != tt.want.SecretKeyFile ||
			opts.WriteNarListing != tt.want.WriteNarListing || opts.CompressionLevel != tt.want.CompressionLevel {
			t.Errorf("ParseURL(%q) = %q, %+v, %v; want %q, %+v", tt.url, dir, opts, err, tt.dir, tt.want)
		}
	}
}

func TestCancel(t *testing.T) {
	c := openTestCache(t, Options{Compression: "zstd"})
	a := storetest.NewObject(t, "a", nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.AddToStoreNar(ctx, a.Info, bytes.NewReader(a.NAR)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if got := files(t, c.Dir()); len(got) != 1 {
		t.Fatalf("files left after cancel: %v", got)
	}
}
