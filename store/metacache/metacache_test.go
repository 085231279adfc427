package metacache

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store"
)

func testPath(t testing.TB, i int, name string) store.Path {
	t.Helper()
	p, err := store.MakeTextPath(name, sha256.Sum256([]byte(fmt.Sprint(i, name))), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testInfo(t testing.TB, i int) *store.PathInfo {
	p := testPath(t, i, fmt.Sprintf("pkg-%d", i))
	return &store.PathInfo{
		Path:             p,
		Deriver:          testPath(t, i, fmt.Sprintf("pkg-%d.drv", i)),
		NarHash:          sha256.Sum256([]byte{byte(i)}),
		NarSize:          uint64(1000 + i),
		References:       []store.Path{testPath(t, i+1, "dep"), p},
		RegistrationTime: 1700000000 + int64(i),
		Sigs:             []string{"cache.example.org-1:c2lnbmF0dXJl"},
	}
}

// openTest opens a cache in a fresh directory and collects its warnings.
func openTest(t testing.TB, dir string, opts Options) (*Cache, *[]error) {
	t.Helper()
	var warnings []error
	opts.Warn = func(err error) { warnings = append(warnings, err) }
	c, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, &warnings
}

func TestPathInfoCodec(t *testing.T) {
	self := testPath(t, 1, "self")
	tests := []struct {
		name string
		info *store.PathInfo
	}{
		{"minimal", &store.PathInfo{Path: self, NarSize: 8}},
		{"full", testInfo(t, 7)},
		{"self reference only", &store.PathInfo{Path: self, NarSize: 8, References: []store.Path{self}}},
		{"ultimate with CA", &store.PathInfo{Path: self, NarSize: 1, Ultimate: true,
			CA: "fixed:r:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"}},
		{"negative registration time", &store.PathInfo{Path: self, NarSize: 1, RegistrationTime: -5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := appendPathInfo(nil, tt.info)
			got, err := decodePathInfo(enc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.info) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tt.info)
			}
			// Every strict prefix is malformed, never a panic or a short info.
			for n := range len(enc) {
				if _, err := decodePathInfo(enc[:n]); !errors.Is(err, errRecord) {
					t.Fatalf("prefix of %d bytes: err = %v, want errRecord", n, err)
				}
			}
			if _, err := decodePathInfo(append(enc, 0)); !errors.Is(err, errRecord) {
				t.Fatalf("trailing byte accepted: %v", err)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	good := appendPathInfo(nil, testInfo(t, 3))
	badName := bytes.Clone(good)
	badName[1+store.DigestSize+1] = '/' // first byte of the path's name
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown version", append([]byte{9}, good[1:]...)},
		{"invalid name", badName},
		{"huge reference count", append(bytes.Clone(good[:1+store.DigestSize+1+5+1+32]), 0xff, 0xff, 0xff, 0xff, 0x0f)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodePathInfo(tt.b); !errors.Is(err, errRecord) {
				t.Fatalf("err = %v, want errRecord", err)
			}
		})
	}
}

func FuzzDecodePathInfo(f *testing.F) {
	f.Add(appendPathInfo(nil, testInfo(f, 1)))
	f.Add(appendPathInfo(nil, &store.PathInfo{Path: testPath(f, 2, "x"), NarSize: 1}))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := decodePathInfo(b)
		if err != nil {
			return
		}
		if again := appendPathInfo(nil, info); !bytes.Equal(again, b) {
			// Varints have several encodings; the decoded value must still round-trip.
			if info2, err := decodePathInfo(again); err != nil || !reflect.DeepEqual(info, info2) {
				t.Fatalf("re-encoding does not round-trip: %v", err)
			}
		}
	})
}

func TestRoundTripAndPersistence(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mc")
	c, warnings := openTest(t, dir, Options{})
	if c.Degraded() != nil || len(*warnings) != 0 {
		t.Fatalf("fresh cache degraded: %v %v", c.Degraded(), *warnings)
	}
	drvPath := testPath(t, 1, "hello.drv")
	aterm := []byte(`Derive([("out","/nix/store/x","","")],[],[],"x86_64-linux","/bin/sh",[],[])`)
	info := testInfo(t, 1)
	if err := c.PutDerivation(drvPath, aterm); err != nil {
		t.Fatal(err)
	}
	if err := c.PutPathInfo("daemon", info); err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{10 * time.Second, 20 * time.Second} {
		if err := c.RecordBuild("hello-2.12", d); err != nil {
			t.Fatal(err)
		}
	}
	check := func(c *Cache) {
		t.Helper()
		if got, ok := c.Derivation(drvPath); !ok || !bytes.Equal(got, aterm) {
			t.Errorf("Derivation = %q, %v", got, ok)
		}
		if got, ok := c.PathInfo("daemon", info.Path); !ok || !reflect.DeepEqual(got, info) {
			t.Errorf("PathInfo = %+v, %v", got, ok)
		}
		if _, ok := c.PathInfo("ssh-ng://other", info.Path); ok {
			t.Error("path info leaked to another store URI")
		}
		want := BuildStats{Count: 2, Average: 13 * time.Second, Last: 20 * time.Second}
		if got, ok := c.BuildStats("hello-2.12"); !ok || got != want {
			t.Errorf("BuildStats = %+v, %v; want %+v", got, ok, want)
		}
		if _, ok := c.BuildStats("other"); ok {
			t.Error("BuildStats of an unknown name")
		}
	}
	check(c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2, _ := openTest(t, dir, Options{})
	check(c2)
}

func TestValidPaths(t *testing.T) {
	c, _ := openTest(t, filepath.Join(t.TempDir(), "mc"), Options{})
	a, b, x := testInfo(t, 1), testPath(t, 2, "b"), testPath(t, 3, "x")
	if err := c.PutPathInfo("daemon", a); err != nil {
		t.Fatal(err)
	}
	if err := c.PutValid("daemon", []store.Path{b}); err != nil {
		t.Fatal(err)
	}
	got := c.ValidPaths("daemon", []store.Path{x, b, a.Path})
	if want := []store.Path{b, a.Path}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ValidPaths = %v, want %v", got, want)
	}
	if got := c.ValidPaths("other", []store.Path{b, a.Path}); len(got) != 0 {
		t.Fatalf("other store: %v", got)
	}
}

func TestLockContentionSameProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mc")
	first, _ := openTest(t, dir, Options{})
	p := testInfo(t, 1)
	if err := first.PutPathInfo("daemon", p); err != nil {
		t.Fatal(err)
	}

	second, warnings := openTest(t, dir, Options{})
	if !errors.Is(second.Degraded(), ErrLocked) {
		t.Fatalf("second Open: Degraded() = %v, want ErrLocked", second.Degraded())
	}
	if len(*warnings) != 1 || !errors.Is((*warnings)[0], ErrLocked) {
		t.Fatalf("warnings = %v, want one ErrLocked", *warnings)
	}
	// Degraded: misses and dropped writes, never errors.
	if _, ok := second.PathInfo("daemon", p.Path); ok {
		t.Error("degraded cache answered a lookup")
	}
	if err := second.PutPathInfo("daemon", testInfo(t, 2)); err != nil {
		t.Error(err)
	}
	if err := second.RecordBuild("x", time.Second); err != nil {
		t.Error(err)
	}
	second.Close()

	// With LockWait the second Open gets the cache once the first closes.
	released := make(chan struct{})
	go func() {
		time.Sleep(50 * time.Millisecond)
		first.Close()
		close(released)
	}()
	third, warnings := openTest(t, dir, Options{LockWait: time.Minute})
	<-released
	if third.Degraded() != nil || len(*warnings) != 0 {
		t.Fatalf("waiting Open: %v %v", third.Degraded(), *warnings)
	}
	if _, ok := third.PathInfo("daemon", p.Path); !ok {
		t.Error("entry written by the first Open is missing")
	}
}

// helperEnv makes the test binary, re-executed, act as a second process
// that opens the cache and reports what it saw.
const helperEnv = "METACACHE_TEST_HELPER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		var warned []string
		c, err := Open(dir, Options{Warn: func(err error) { warned = append(warned, err.Error()) }})
		if err != nil {
			fmt.Println("open error:", err)
			os.Exit(1)
		}
		_ = c.PutDerivation(testPath(&testing.T{}, 9, "child.drv"), []byte("child"))
		fmt.Printf("degraded=%v locked=%v warnings=%d\n", c.Degraded() != nil, errors.Is(c.Degraded(), ErrLocked), len(warned))
		c.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runHelper(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper process: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestLockContentionSecondProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mc")
	c, _ := openTest(t, dir, Options{})
	if got, want := runHelper(t, dir), "degraded=true locked=true warnings=1"; got != want {
		t.Fatalf("second process while locked: %q, want %q", got, want)
	}
	c.Close()
	if got, want := runHelper(t, dir), "degraded=false locked=false warnings=0"; got != want {
		t.Fatalf("second process after Close: %q, want %q", got, want)
	}
	c2, _ := openTest(t, dir, Options{})
	if _, ok := c2.Derivation(testPath(t, 9, "child.drv")); !ok {
		t.Error("entry written by the second process is missing")
	}
}

func TestCorruptionRecovery(t *testing.T) {
	populate := func(t *testing.T, dir string) {
		c, _ := openTest(t, dir, Options{})
		for i := range 200 {
			if err := c.PutPathInfo("daemon", testInfo(t, i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	garbage := bytes.Repeat([]byte("garbage!"), 4096)
	truncateManifest := func(t *testing.T, dir string, size func(int64) int64) {
		populate(t, dir)
		m := filepath.Join(dir, "MANIFEST")
		fi, err := os.Stat(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(m, size(fi.Size())); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		corrupt func(t *testing.T, dir string)
		// badger itself recovers from a manifest cut mid-record (it is an
		// append-only log); then there is no warning, only a working cache.
		maybeClean bool
	}{
		{"garbage manifest in an empty dir", func(t *testing.T, dir string) {
			os.MkdirAll(dir, 0o755)
			os.WriteFile(filepath.Join(dir, "MANIFEST"), garbage, 0o644)
		}, false},
		{"manifest truncated inside its header", func(t *testing.T, dir string) {
			truncateManifest(t, dir, func(int64) int64 { return 5 })
		}, false},
		{"manifest truncated mid-record", func(t *testing.T, dir string) {
			truncateManifest(t, dir, func(n int64) int64 { return n / 2 })
		}, true},
		{"manifest truncated to nothing", func(t *testing.T, dir string) {
			truncateManifest(t, dir, func(int64) int64 { return 0 })
		}, true},
		{"garbage table and value log files", func(t *testing.T, dir string) {
			populate(t, dir)
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if ext := filepath.Ext(e.Name()); ext == ".sst" || ext == ".vlog" || ext == ".mem" {
					os.WriteFile(filepath.Join(dir, e.Name()), garbage, 0o644)
				}
			}
		}, false},
		{"garbage memtable log", func(t *testing.T, dir string) {
			populate(t, dir)
			os.WriteFile(filepath.Join(dir, "00009.mem"), garbage, 0o644)
		}, true},
		{"garbage value log", func(t *testing.T, dir string) {
			populate(t, dir)
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if filepath.Ext(e.Name()) == ".vlog" {
					os.WriteFile(filepath.Join(dir, e.Name()), garbage, 0o644)
				}
			}
		}, true},
		{"table with one flipped byte", func(t *testing.T, dir string) {
			populate(t, dir)
			ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
			if len(ssts) == 0 {
				t.Fatal("no table written")
			}
			b, _ := os.ReadFile(ssts[0])
			b[len(b)/3] ^= 0x40
			os.WriteFile(ssts[0], b, 0o644)
		}, false},
		{"manifest replaced by a directory", func(t *testing.T, dir string) {
			os.MkdirAll(filepath.Join(dir, "MANIFEST"), 0o755)
		}, false},
		{"cache dir is a file", func(t *testing.T, dir string) {
			os.WriteFile(dir, garbage, 0o644)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "mc")
			tt.corrupt(t, dir)
			c, warnings := openTest(t, dir, Options{})
			if c.Degraded() != nil {
				t.Fatalf("degraded after corruption: %v", c.Degraded())
			}
			switch {
			case tt.maybeClean && len(*warnings) == 0:
				t.Log("badger recovered by itself")
			case len(*warnings) != 1 || !errors.Is((*warnings)[0], ErrCorrupt):
				t.Fatalf("warnings = %v, want one ErrCorrupt", *warnings)
			default:
				if _, err := os.Stat(dir + ".corrupt"); err != nil {
					t.Errorf("corrupt dir not moved aside: %v", err)
				}
			}
			info := testInfo(t, 1)
			if err := c.PutPathInfo("daemon", info); err != nil {
				t.Fatal(err)
			}
			if _, ok := c.PathInfo("daemon", info.Path); !ok {
				t.Fatal("rebuilt cache does not cache")
			}
		})
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if d, err := DefaultDir(); err != nil || d != "/xdg/nbuild/metacache" {
		t.Errorf("DefaultDir = %q, %v", d, err)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if d, err := DefaultDir(); err != nil || d != "/home/u/.cache/nbuild/metacache" {
		t.Errorf("DefaultDir = %q, %v", d, err)
	}
}

func BenchmarkPathInfoHit(b *testing.B) {
	c, _ := openTest(b, filepath.Join(b.TempDir(), "mc"), Options{})
	info := testInfo(b, 1)
	if err := c.PutPathInfo("daemon", info); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.PathInfo("daemon", info.Path); !ok {
			b.Fatal("miss")
		}
	}
}

func BenchmarkValidPaths(b *testing.B) {
	for _, n := range []int{100, 3000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			c, _ := openTest(b, filepath.Join(b.TempDir(), "mc"), Options{})
			paths := make([]store.Path, n)
			for i := range paths {
				paths[i] = testPath(b, i, "p")
			}
			if err := c.PutValid("daemon", paths); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if got := c.ValidPaths("daemon", paths); len(got) != n {
					b.Fatalf("%d valid, want %d", len(got), n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/path")
		})
	}
}

func BenchmarkOpenClose(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "mc")
	b.ReportAllocs()
	for b.Loop() {
		c, err := Open(dir, Options{})
		if err != nil || c.Degraded() != nil {
			b.Fatal(err, c.Degraded())
		}
		c.Close()
	}
}

// TestReadOnly opens a cache for lookups: it sees what a writer recorded,
// drops writes, shares the directory with other readers but not with a
// writer, and never creates a missing directory.
func TestReadOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	var warned []error
	ro := Options{ReadOnly: true, Warn: func(err error) { warned = append(warned, err) }}

	c, _ := Open(dir, ro)
	if c.Degraded() == nil || len(warned) != 1 {
		t.Fatalf("missing directory: degraded %v, warnings %v", c.Degraded(), warned)
	}
	c.Close()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a read-only Open created %s: %v", dir, err)
	}

	w, _ := Open(dir, Options{})
	if err := w.RecordBuild("hello-2.12", 3*time.Second); err != nil {
		t.Fatal(err)
	}
	// A writer holds the directory: a reader runs uncached.
	if c, _ := Open(dir, Options{ReadOnly: true}); !errors.Is(c.Degraded(), ErrLocked) {
		t.Errorf("reader beside a writer: degraded %v, want ErrLocked", c.Degraded())
	} else {
		c.Close()
	}
	w.Close()

	r1, _ := Open(dir, Options{ReadOnly: true})
	defer r1.Close()
	r2, _ := Open(dir, Options{ReadOnly: true})
	defer r2.Close()
	for _, r := range []*Cache{r1, r2} {
		if err := r.Degraded(); err != nil {
			t.Fatalf("two readers: %v", err)
		}
		if s, ok := r.BuildStats("hello-2.12"); !ok || s.Average != 3*time.Second {
			t.Errorf("BuildStats = %+v, %v", s, ok)
		}
		if all := r.AllBuildStats(); len(all) != 1 || all["hello-2.12"].Average != 3*time.Second {
			t.Errorf("AllBuildStats = %+v", all)
		}
	}
	if err := r1.RecordBuild("other-1", time.Second); err != nil {
		t.Errorf("RecordBuild on a reader: %v", err)
	}
	if err := r1.PutValid("daemon", []store.Path{testPath(t, 1, "x")}); err != nil {
		t.Errorf("PutValid on a reader: %v", err)
	}
	if _, ok := r1.BuildStats("other-1"); ok {
		t.Error("a reader's write was kept")
	}
}
