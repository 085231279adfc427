package drv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store"
)

// storeRoot is the chroot store testdata/refresh.sh fills with real Nix.
const storeRoot = "../../testdata/store"

// fixtureDrvs lists every .drv file Nix wrote into testdata/store, as store
// paths.
func fixtureDrvs(t testing.TB) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(storeRoot, store.StoreDir))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".drv") {
			paths = append(paths, store.StoreDir+"/"+e.Name())
		}
	}
	if len(paths) == 0 {
		t.Fatal("no fixtures in testdata/store (run testdata/refresh.sh)")
	}
	return paths
}

func readFixture(t testing.TB, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(storeRoot, p))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestFixturesRoundTrip: every .drv real Nix wrote parses and is written
// back byte for byte, with and without an interner.
func TestFixturesRoundTrip(t *testing.T) {
	interned := map[string]string{}
	p := &Parser{Intern: func(b []byte) string {
		if s, ok := interned[string(b)]; ok {
			return s
		}
		s := string(b)
		interned[s] = s
		return s
	}}
	for _, path := range fixtureDrvs(t) {
		data := readFixture(t, path)
		d, err := Parse(data)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if got := d.AppendATerm(nil); !bytes.Equal(got, data) {
			t.Errorf("%s: round trip differs:\n got %q\nwant %q", path, got, data)
		}
		d2, err := p.Parse(data)
		if err != nil {
			t.Errorf("%s: with Intern: %v", path, err)
			continue
		}
		if !reflect.DeepEqual(d, d2) {
			t.Errorf("%s: Intern changes the result", path)
		}
	}
}

// TestFixturesPaths: the .drv path recomputed from the contents equals the
// file's name, and every output path (and the env var of each output)
// equals what Nix wrote, across all output kinds.
func TestFixturesPaths(t *testing.T) {
	h := NewHasher(FileLoader(storeRoot))
	kinds := map[OutputKind]int{}
	for _, path := range fixtureDrvs(t) {
		d, err := Parse(readFixture(t, path))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		dp, err := DrvPath(d)
		if err != nil {
			t.Errorf("%s: DrvPath: %v", path, err)
		} else if dp.String() != path {
			t.Errorf("DrvPath = %s, want %s", dp, path)
		}
		kind, err := d.Kind()
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		kinds[kind]++
		outs, err := h.OutputPaths(d)
		if err != nil {
			t.Errorf("%s: OutputPaths: %v", path, err)
			continue
		}
		for i, o := range outs {
			if got, want := o.Path, d.Outputs[i].Path; got != want {
				t.Errorf("%s: output %s path = %q, want %q", path, o.Name, got, want)
			}
			if env, _ := d.Getenv(o.Name); env != o.EnvValue() {
				t.Errorf("%s: env %s = %q, want %q", path, o.Name, o.EnvValue(), env)
			}
		}
		if _, err := h.HashModulo(path); err != nil {
			t.Errorf("%s: HashModulo: %v", path, err)
		}
	}
	for _, k := range []OutputKind{InputAddressed, FixedOutput, Floating, Deferred, Impure} {
		if kinds[k] == 0 {
			t.Errorf("no %s derivation among the fixtures", k)
		}
	}
	t.Logf("kinds: %v", kinds)
}

// TestFixturesShowJSON: ShowJSON of the closure of each root equals, as a
// JSON value and byte for byte, what `nix show-derivation -r` printed.
func TestFixturesShowJSON(t *testing.T) {
	goldens, err := filepath.Glob("../../testdata/golden/*/*.show.json")
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	roots := rootsByGolden(t)
	load := FileLoader(storeRoot)
	for _, g := range goldens {
		want, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		root, ok := roots[g]
		if !ok {
			t.Errorf("%s: no root in testdata/roots", g)
			continue
		}
		drvs, err := Closure(t.Context(), []string{root}, load)
		if err != nil {
			t.Errorf("%s: %v", g, err)
			continue
		}
		got, err := ShowJSON(drvs)
		if err != nil {
			t.Errorf("%s: %v", g, err)
			continue
		}
		var gv, wv any
		if err := json.Unmarshal(got, &gv); err != nil {
			t.Errorf("%s: output is not JSON: %v", g, err)
			continue
		}
		if err := json.Unmarshal(want, &wv); err != nil {
			t.Fatalf("%s: %v", g, err)
		}
		if !reflect.DeepEqual(gv, wv) {
			t.Errorf("%s: JSON value differs:\n got %s\nwant %s", g, got, want)
		} else if !bytes.Equal(got, want) {
			t.Errorf("%s: same value, different bytes:\n got %q\nwant %q", g, got, want)
		}
	}
}

// rootsByGolden maps golden/NAME/ATTR.show.json to the drv path in
// roots/NAME.txt.
func rootsByGolden(t *testing.T) map[string]string {
	t.Helper()
	files, _ := filepath.Glob("../../testdata/roots/*.txt")
	res := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".txt")
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			attr, drv, ok := strings.Cut(line, " ")
			if ok {
				res[filepath.Join("../../testdata/golden", name, attr+".show.json")] = drv
			}
		}
	}
	return res
}

// TestFixtureAttrs reads the scheduling attributes from plain env and from
// __json.
func TestFixtureAttrs(t *testing.T) {
	roots := map[string]string{}
	for g, drv := range rootsByGolden(t) {
		if filepath.Base(filepath.Dir(g)) == "kinds" {
			roots[strings.TrimSuffix(filepath.Base(g), ".show.json")] = drv
		}
	}
	load := FileLoader(storeRoot)
	tests := []struct {
		attr     string
		name     string
		features []string
		local    bool
		subst    bool
	}{
		{"ia-simple", "ia-simple", nil, false, true},
		{"features", "features", []string{"benchmark", "kvm", "nixos-test"}, true, false},
		{"structured", "structured", []string{"big-parallel", "kvm"}, true, false},
		{"ca-floating", "ca-floating", []string{"ca-derivations"}, false, true},
		{"deferred", "deferred", []string{"ca-derivations"}, false, true},
		{"impure", "impure", []string{"ca-derivations"}, false, true},
		{"fetchurl", "source.tar.gz", nil, true, true},
	}
	for _, tt := range tests {
		d, err := load(roots[tt.attr])
		if err != nil {
			t.Fatalf("%s: %v", tt.attr, err)
		}
		if got := d.Name(); got != tt.name {
			t.Errorf("%s: Name() = %q, want %q", tt.attr, got, tt.name)
		}
		a, err := d.Scheduling()
		if err != nil {
			t.Errorf("%s: %v", tt.attr, err)
		}
		if !reflect.DeepEqual(a.RequiredSystemFeatures, tt.features) || !reflect.DeepEqual(d.RequiredSystemFeatures(), tt.features) {
			t.Errorf("%s: features = %q, want %q", tt.attr, a.RequiredSystemFeatures, tt.features)
		}
		if d.PreferLocalBuild() != tt.local || d.AllowSubstitutes() != tt.subst {
			t.Errorf("%s: preferLocalBuild %v allowSubstitutes %v, want %v %v", tt.attr,
				d.PreferLocalBuild(), d.AllowSubstitutes(), tt.local, tt.subst)
		}
	}
}

// TestPlaceholders checks the placeholders against the ones Nix wrote into
// the fixtures' env.
func TestPlaceholders(t *testing.T) {
	if got, want := HashPlaceholder("out"), "/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9"; got != want {
		t.Errorf("HashPlaceholder(out) = %s, want %s", got, want)
	}
	load := FileLoader(storeRoot)
	var found int
	for _, path := range fixtureDrvs(t) {
		d, err := load(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range d.InputDrvs {
			ip := in.Path
			id, err := load(in.Path.String())
			if err != nil {
				t.Fatal(err)
			}
			if k, _ := id.Kind(); k.StaticPaths() {
				continue
			}
			// The consumer's env refers to the input's outputs by placeholder.
			for _, o := range in.Outputs {
				ph := DownstreamPlaceholder(ip, o)
				if !strings.Contains(envText(d), ph) {
					t.Errorf("%s: no %s (placeholder of %s!%s) in env", path, ph, in.Path, o)
				}
				found++
			}
		}
	}
	if found == 0 {
		t.Error("no derivation depends on a floating output")
	}
}

func envText(d *Derivation) string {
	var b strings.Builder
	for _, e := range d.Env {
		b.WriteString(e.Value)
		b.WriteByte(' ')
	}
	return b.String()
}

// TestHasherConcurrent: one Hasher shared by goroutines gives every one of
// them the results a Hasher of its own gives (run with -race).
func TestHasherConcurrent(t *testing.T) {
	paths := fixtureDrvs(t)
	want := map[string]ModuloHash{}
	solo := NewHasher(FileLoader(storeRoot))
	for _, p := range paths {
		h, err := solo.HashModulo(p)
		if err != nil {
			t.Fatal(err)
		}
		want[p] = h
	}
	shared := NewHasher(FileLoader(storeRoot))
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			for i := range paths {
				p := paths[(i*7+g*13)%len(paths)]
				h, err := shared.HashModulo(p)
				if err == nil && h != want[p] {
					err = fmt.Errorf("%s: %v, want %v", p, h, want[p])
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestHasherCycle: a store whose .drv files refer to each other in a
// cycle (impossible for real .drv paths) gives an error, not a hang.
func TestHasherCycle(t *testing.T) {
	const a = "/nix/store/00000000000000000000000000000000-a.drv"
	const b = "/nix/store/11111111111111111111111111111111-b.drv"
	mk := func(in string) *Derivation {
		return &Derivation{
			Outputs:   []Output{{Name: "out", Path: store.MustParsePath(outPath)}},
			InputDrvs: []InputDrv{{Path: store.MustParsePath(in), Outputs: []string{"out"}}},
			Env:       []EnvVar{{Key: "name", Value: "x"}},
		}
	}
	h := NewHasher(func(p string) (*Derivation, error) {
		if p == a {
			return mk(b), nil
		}
		return mk(a), nil
	})
	if _, err := h.HashModulo(a); err == nil || !strings.Contains(err.Error(), "depends on itself") {
		t.Errorf("cycle: %v", err)
	}
}
