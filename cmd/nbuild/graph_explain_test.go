package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/eval/explain"
)

func TestGraphDiffJSONAndFormats(t *testing.T) {
	v1 := testStore + fixtureRoot(t, "explain-v1", "system")
	v2 := testStore + fixtureRoot(t, "explain-v2", "system")
	out, errOut, code := run(t, graphArgs("--diff", v1, v2, "--format", "json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	r, err := explain.ReadDiffJSON(strings.NewReader(out))
	if err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(r.Changed) != 11 || len(r.Gone) != 10 || len(r.Roots) != 6 {
		t.Errorf("JSON: %d changed, %d gone, %d causes; want 11, 10, 6", len(r.Changed), len(r.Gone), len(r.Roots))
	}
	var again bytes.Buffer
	if err := explain.WriteDiffJSON(&again, r); err != nil || again.String() != out {
		t.Errorf("JSON does not round-trip (%v)", err)
	}
	for _, f := range []string{"tree", "dot"} {
		if _, errOut, code := run(t, graphArgs("--diff", v1, v2, "--format", f)...); code != 2 || !strings.Contains(errOut, "--diff") {
			t.Errorf("--diff --format %s: exit %d %q, want a usage error", f, code, errOut)
		}
	}
}

func TestGraphWhyByName(t *testing.T) {
	sys := testStore + fixtureRoot(t, "explain-v2", "system")
	out, errOut, code := run(t, graphArgs("--why", "libpng", sys)...)
	if code != 0 || !strings.Contains(out, "-libpng-1.6.40.drv is in the closure through 2 shortest chain(s) of 3 step(s)") {
		t.Errorf("--why libpng: exit %d %s\n%s", code, errOut, out)
	}
	_, errOut, code = run(t, graphArgs("--why", "perl", sys)...)
	if code != 1 || !strings.Contains(errOut, `2 paths in the closure match "perl"; pick one`) ||
		!strings.Contains(errOut, "-perl-5.36.0.drv") || !strings.Contains(errOut, "-perl-5.36.0.tar.xz.drv") {
		t.Errorf("--why perl: exit %d, %q", code, errOut)
	}
	_, errOut, code = run(t, graphArgs("--why", "libpng-1.6.39", sys)...)
	if code != 1 || !strings.Contains(errOut, `no derivation or source named "libpng-1.6.39"`) {
		t.Errorf("--why libpng-1.6.39: exit %d, %q", code, errOut)
	}
}
