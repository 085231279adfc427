package drv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store/storetest"
)

// TestLiveNix instantiates a fresh variant of testdata/nix/kinds.nix (a
// nonce in the shared builder script changes almost every .drv, and a
// derivation with random bytes in its strings is added) with the real Nix
// into a temporary chroot store, then checks every .drv Nix wrote: byte-exact
// round trip, .drv path, output paths, and `nix show-derivation -r` JSON.
func TestLiveNix(t *testing.T) {
	storetest.RequireNix(t)
	src, err := os.ReadFile("../../testdata/nix/kinds.nix")
	if err != nil {
		t.Fatal(err)
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	expr := string(src)
	marker := "for o in $outputs;"
	if !strings.Contains(expr, marker) {
		t.Fatal("kinds.nix changed: no builder marker")
	}
	expr = strings.Replace(expr, marker, fmt.Sprintf("# nonce %d\n    %s", seed, marker), 1)
	end := strings.LastIndex(expr, "}")
	expr = expr[:end] + randomDerivation(rng) + "}\n"

	dir := t.TempDir()
	file := filepath.Join(dir, "live.nix")
	if err := os.WriteFile(file, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "store")
	flags := []string{"--extra-experimental-features", "nix-command ca-derivations impure-derivations", "--store", root}
	out, err := exec.Command("nix-instantiate", append(flags, file)...).Output()
	if err != nil {
		t.Fatalf("nix-instantiate: %v\n%s", err, stderrOf(err))
	}
	roots := strings.Fields(string(out))
	if len(roots) < 20 {
		t.Fatalf("nix-instantiate gave %d paths", len(roots))
	}

	ents, err := os.ReadDir(filepath.Join(root, "nix/store"))
	if err != nil {
		t.Fatal(err)
	}
	h := NewHasher(FileLoader(root))
	n := 0
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".drv") {
			continue
		}
		n++
		path := "/nix/store/" + e.Name()
		data, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		d, err := Parse(data)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if got := d.AppendATerm(nil); !bytes.Equal(got, data) {
			t.Errorf("%s: round trip differs", path)
		}
		if dp, err := DrvPath(d); err != nil || dp.String() != path {
			t.Errorf("%s: DrvPath = %v, %v", path, dp, err)
		}
		ops, err := h.OutputPaths(d)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		for i, o := range ops {
			want := d.Outputs[i].Path
			if got := o.EnvValue(); o.Path != want {
				t.Errorf("%s: output %s = %q, Nix wrote %q", path, o.Name, got, want)
			}
		}
	}
	t.Logf("%d derivations checked", n)

	want, err := exec.Command("nix", append(append(flags, "show-derivation", "-r"), roots...)...).Output()
	if err != nil {
		t.Fatalf("nix show-derivation: %v\n%s", err, stderrOf(err))
	}
	drvs, err := Closure(t.Context(), roots, FileLoader(root))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ShowJSON(drvs)
	if err != nil {
		t.Fatal(err)
	}
	var gv, wv any
	if err := json.Unmarshal(got, &gv); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &wv); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gv, wv) {
		t.Errorf("show-derivation JSON differs")
	} else if !bytes.Equal(got, want) {
		t.Errorf("show-derivation JSON: same value, different bytes")
	}
}

// randomDerivation returns a Nix attribute "live-random = derivation {…};"
// whose builder, args and env hold random text with control bytes, JSON
// escapes and non-ASCII runes.
func randomDerivation(rng *rand.Rand) string {
	// Each piece is written as Nix source for a string holding JSON, which
	// builtins.fromJSON turns into bytes Nix strings cannot spell.
	raw := []string{"a", "b", " ", `\\\\`, `\\\"`, `\\t`, `\$`, "é"}
	str := func() string {
		var b strings.Builder
		for i := rng.IntN(40); i > 0; i-- {
			switch rng.IntN(4) {
			case 0:
				fmt.Fprintf(&b, `\\u%04x`, 1+rng.IntN(0x7f)) // any ASCII but NUL
			case 1:
				fmt.Fprintf(&b, `\\u%04x`, 0xa0+rng.IntN(0xd000)) // BMP, below surrogates
			default:
				b.WriteString(raw[rng.IntN(len(raw))])
			}
		}
		return `(builtins.fromJSON "\"` + b.String() + `\"")`
	}
	var b strings.Builder
	b.WriteString("  live-random = derivation {\n    name = \"live-random\";\n    system = \"x86_64-linux\";\n")
	// Nix wants a non-empty builder.
	fmt.Fprintf(&b, "    builder = \"/bin/sh\" + %s;\n    args = [ %s %s ];\n", str(), str(), str())
	for i := range 5 {
		fmt.Fprintf(&b, "    k%d = %s;\n", i, str())
	}
	b.WriteString("  };\n")
	return b.String()
}

func stderrOf(err error) []byte {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.Stderr
	}
	return nil
}
