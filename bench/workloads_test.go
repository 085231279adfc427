package bench

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/bench/gen/graphgen"
	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/store/storetest"
)

// runWorkload runs the registry's workload name as sub-benchmarks, after
// the gates of its Needs: a missing tool skips it, or fails it with
// CI=true (storetest's gates).
func runWorkload(b *testing.B, name string) {
	w, err := FindWorkload(name)
	if err != nil {
		b.Fatal(err)
	}
	if w.Needs&NeedsDaemon != 0 {
		storetest.RequireDaemon(b)
	}
	if w.Needs&NeedsNix != 0 {
		storetest.RequireNix(b)
	}
	cases, err := w.Cases(b.Context(), testEnv(b))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range cases {
		b.Run(c.Name, c.Run)
	}
}

// testEnv is the Env of go test, run in this directory: the repository's
// testdata is next door.
func testEnv(tb testing.TB) Env {
	testdata, err := filepath.Abs("../testdata")
	if err != nil {
		tb.Fatal(err)
	}
	return Env{Testdata: testdata, CacheDir: graphgen.CacheDir(), TempDir: tb.TempDir()}
}

// simulate is SchedWorkload.SimulateSched for tests.
func simulate(tb testing.TB, w *SchedWorkload, p sched.Policy) (*sched.Timeline, SchedResult) {
	tb.Helper()
	tl, res, err := w.SimulateSched(p)
	if err != nil {
		tb.Fatal(err)
	}
	return tl, res
}

// TestWorkloadsAreBenchmarks checks that the registry and the package's
// Benchmark functions are the same set: Benchmark<Name> runs the workload
// Name. (The copy tests, TestCopy*, are whole-process hyperfine runs, not
// func(*testing.B) workloads, and are not in the registry.)
func TestWorkloadsAreBenchmarks(t *testing.T) {
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	var benchmarks []string
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Benchmark") {
				benchmarks = append(benchmarks, strings.TrimPrefix(fn.Name.Name, "Benchmark"))
			}
		}
	}
	var names []string
	for _, w := range Workloads() {
		names = append(names, w.Name)
		if w.Doc == "" || strings.Contains(w.Doc, "\n") || w.Cases == nil {
			t.Errorf("workload %s: wants a one-line Doc and Cases", w.Name)
		}
	}
	slices.Sort(benchmarks)
	slices.Sort(names)
	if !slices.Equal(benchmarks, names) {
		t.Errorf("Benchmark functions %v, registry %v", benchmarks, names)
	}
}

// TestWorkloadCases prepares the workloads that need only the testdata
// directory (the cheap ones) and checks their case names are unique and
// non-empty.
func TestWorkloadCases(t *testing.T) {
	for _, w := range Workloads() {
		if w.Needs != NeedsTestdata {
			continue
		}
		t.Run(w.Name, func(t *testing.T) {
			cases, err := w.Cases(t.Context(), testEnv(t))
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, c := range cases {
				if c.Name == "" || seen[c.Name] || c.Run == nil {
					t.Errorf("case %q: empty, repeated or without Run", c.Name)
				}
				seen[c.Name] = true
			}
			if len(cases) == 0 {
				t.Error("no cases")
			}
		})
	}
}

func TestFindWorkload(t *testing.T) {
	if _, err := FindWorkload("DrvParse"); err != nil {
		t.Fatal(err)
	}
	if _, err := FindWorkload("nope"); err == nil || !strings.Contains(err.Error(), "DrvParse") {
		t.Fatalf("want an error listing the workloads, got %v", err)
	}
}

func TestEnvTestdataRequired(t *testing.T) {
	w, _ := FindWorkload("DrvWrite")
	if _, err := w.Cases(t.Context(), Env{}); err == nil || !strings.Contains(err.Error(), "Testdata") {
		t.Fatalf("want an error naming Env.Testdata, got %v", err)
	}
}

// Constructors report a missing tool or daemon as an error callers can
// test, rather than stopping the program.
func TestMissingTools(t *testing.T) {
	if _, err := DaemonConn(t.Context(), filepath.Join(t.TempDir(), "socket")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DaemonConn without a socket: want fs.ErrNotExist, got %v", err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := GraphCorpus(t.Context(), t.TempDir(), 100); !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("GraphCorpus without Nix: want exec.ErrNotFound, got %v", err)
	}
	if _, err := Goroot(); !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("Goroot without go: want exec.ErrNotFound, got %v", err)
	}
	// The drv workloads run without Nix, on the fixtures and scripts.
	cases, err := eachDrvCorpus(drvWriteCases)(t.Context(), Env{Testdata: testEnv(t).Testdata, CacheDir: t.TempDir()})
	if err != nil || len(cases) != 2 {
		t.Errorf("DrvWrite without Nix: %d cases, %v; want fixtures and scripts", len(cases), err)
	}
}
