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
