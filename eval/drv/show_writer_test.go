package drv

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestShowWriterMatchesShowJSON streams every fixture derivation through
// a ShowWriter (flushing many times) and compares with ShowJSON.
func TestShowWriterMatchesShowJSON(t *testing.T) {
	files, err := filepath.Glob("../../testdata/store/nix/store/*.drv")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	drvs := map[string]*Derivation{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		drvs["/nix/store/"+filepath.Base(f)] = d
	}
	for _, n := range []int{0, 1, len(drvs)} {
		paths := make([]string, 0, len(drvs))
		for p := range drvs {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		paths = paths[:n]
		sub := map[string]*Derivation{}
		for _, p := range paths {
			sub[p] = drvs[p]
		}
		want, err := ShowJSON(sub)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		sw := NewShowWriter(&got)
		for _, p := range paths {
			if err := sw.Write(p, sub[p]); err != nil {
				t.Fatal(err)
			}
		}
		if err := sw.Close(); err != nil {
			t.Fatal(err)
		}
		if got.String() != string(want) {
			t.Errorf("%d derivations: ShowWriter differs from ShowJSON", n)
		}
		if n == len(drvs) && !strings.Contains(got.String(), "\n  },\n  \"/nix/store/") {
			t.Errorf("entries not separated as ShowJSON does")
		}
		if n > 0 && sw.Write(paths[0], drvs[paths[0]]) == nil {
			t.Errorf("Write after Close succeeded")
		}
	}
}
