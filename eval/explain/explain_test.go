package explain

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/storetest"
)

// instantiate writes expr and instantiates each attr into a chroot store
// at root (shared by calls with the same root), returning the .drv paths.
func instantiate(t *testing.T, root, expr string, attrs ...string) []store.Path {
	t.Helper()
	storetest.RequireNix(t)
	f := filepath.Join(t.TempDir(), "expr.nix")
	if err := os.WriteFile(f, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	var out []store.Path
	for _, a := range attrs {
		b, err := exec.Command("nix-instantiate", "--store", root, f, "-A", a).Output()
		if err != nil {
			t.Fatalf("nix-instantiate -A %s: %v", a, err)
		}
		out = append(out, store.MustParsePath(strings.TrimSpace(string(b))))
	}
	return out
}

const whyExpr = `
let
  mk = name: deps: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo ${name} ${toString deps} > $out"]; };
  src = builtins.toFile "src.txt" "hello";
  a = mk "a" [ src ];
  b = mk "b" [ a ];
  c = mk "c" [ a b ];
  d = derivation { name = "d"; system = "x86_64-linux"; builder = "/bin/sh"; outputs = ["out" "dev"]; args = ["-c" "echo ${c} ${b.drvPath} > $out; echo > $dev"]; };
  lone = mk "lone" [];
in { top = mk "top" [ d d.dev c ]; inherit a lone; }
`

func TestWhy(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	ps := instantiate(t, root, whyExpr, "top", "a", "lone")
	top, a, lone := ps[0], ps[1], ps[2]
	load := DirLoader(root)
	aDrv, err := load(a)
	if err != nil {
		t.Fatal(err)
	}
	src := store.MustParsePath(aDrv.InputSrcs[0])
	aOut := aDrv.Outputs[0].Path

	cases := []struct {
		name   string
		target store.Path
		chains []string // rendered by WhyResult.String, one per chain
		total  uint64
		output string
	}{
		// d reaches the source directly through the drvPath context
		// (inputSrcs), which is shorter than top -> c -> a -> src.
		{"source via drvPath context", src, []string{"top.drv -[dev,out]-> d.drv -[source]-> src.txt"}, 1, ""},
		// a.drv is two steps away along three chains: as c's input, and
		// twice from d, whose drvPath context makes every derivation of
		// b's closure both an input derivation and an input source.
		{"three shortest chains", a, []string{
			"top.drv -[out]-> c.drv -[out]-> a.drv",
			"top.drv -[dev,out]-> d.drv -[out]-> a.drv",
			"top.drv -[dev,out]-> d.drv -[source]-> a.drv",
		}, 3, ""},
		{"output path maps to its derivation", aOut, []string{
			"top.drv -[out]-> c.drv -[out]-> a.drv",
			"top.drv -[dev,out]-> d.drv -[out]-> a.drv",
			"top.drv -[dev,out]-> d.drv -[source]-> a.drv",
		}, 3, "out"},
		{"the root itself", top, []string{"top.drv"}, 1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Why(t.Context(), []store.Path{top}, tc.target, load, 0)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Split(r.String(), "\n")
			if strings.Join(sorted(got), "\n") != strings.Join(sorted(tc.chains), "\n") {
				t.Errorf("chains:\n%s\nwant:\n%s", r.String(), strings.Join(tc.chains, "\n"))
			}
			if r.Total != tc.total {
				t.Errorf("total %d, want %d", r.Total, tc.total)
			}
			if r.Output != tc.output {
				t.Errorf("output %q, want %q", r.Output, tc.output)
			}
		})
	}
	t.Run("limit", func(t *testing.T) {
		r, err := Why(t.Context(), []store.Path{top}, a, load, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Chains) != 1 || r.Total != 3 {
			t.Errorf("limit 1: %d chains of %d, want 1 of 3", len(r.Chains), r.Total)
		}
	})
	t.Run("not in closure", func(t *testing.T) {
		_, err := Why(t.Context(), []store.Path{top}, lone, load, 0)
		if !errors.Is(err, ErrNotInClosure) {
			t.Fatalf("want ErrNotInClosure, got %v", err)
		}
	})
}

func sorted(ss []string) []string {
	out := append([]string(nil), ss...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// diffExpr(v) is a small graph in which only lib's version differs
// between versions; tool does not depend on lib and must not change.
func diffExpr(libVersion, toolFlag string) string {
	return `
let
  mk = name: deps: extra: derivation ({ inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo ${name} ${toString deps} > $out"]; } // extra);
  lib = mk "lib-` + libVersion + `" [] { version = "` + libVersion + `"; };
  app = mk "app-2.0" [ lib ] {};
  plugin = mk "plugin" [ app lib ] {};
  tool = mk "tool" [] { flags = "` + toolFlag + `"; };
in { top = mk "top" [ app plugin tool ] {}; }
`
}

func TestDiff(t *testing.T) {
	dir := t.TempDir()
	oldRoot, newRoot := filepath.Join(dir, "old"), filepath.Join(dir, "new")
	old := instantiate(t, oldRoot, diffExpr("1.0", "-O2"), "top")
	cur := instantiate(t, newRoot, diffExpr("1.1", "-O2"), "top")

	r, err := Diff(t.Context(), cur, old, DirLoader(newRoot), DirLoader(oldRoot))
	if err != nil {
		t.Fatal(err)
	}
	var changed []string
	for _, c := range r.Changed {
		changed = append(changed, c.New.Name())
	}
	if got, want := strings.Join(sorted(changed), " "), "app-2.0.drv lib-1.1.drv plugin.drv top.drv"; got != want {
		t.Errorf("changed = %s, want %s", got, want)
	}
	if len(r.Roots) != 1 {
		t.Fatalf("root causes = %d, want 1 (lib): %+v", len(r.Roots), r.Roots)
	}
	rc := r.Roots[0]
	if rc.New.Name() != "lib-1.1.drv" || rc.Old.Name() != "lib-1.0.drv" || rc.Explains != 4 {
		t.Errorf("root cause %s (old %s) explains %d, want lib-1.1.drv (old lib-1.0.drv) explaining 4", rc.New, rc.Old, rc.Explains)
	}
	var whats []string
	for _, ch := range rc.Own {
		whats = append(whats, ch.What+"="+ch.Old+"->"+ch.New)
	}
	if got, want := strings.Join(sorted(whats), " "), "args=-c echo lib-1.0  > $out->-c echo lib-1.1  > $out env name=lib-1.0->lib-1.1 env version=1.0->1.1"; got != want {
		t.Errorf("own changes = %s, want %s", got, want)
	}
	for _, c := range r.Changed {
		if c.New.Name() != "lib-1.1.drv" && len(c.Own) > 0 {
			t.Errorf("%s has own changes %+v; it changed only through lib", c.New, c.Own)
		}
	}

	t.Run("two independent changes", func(t *testing.T) {
		newRoot2 := filepath.Join(dir, "new2")
		cur2 := instantiate(t, newRoot2, diffExpr("1.1", "-O3"), "top")
		r, err := Diff(t.Context(), cur2, old, DirLoader(newRoot2), DirLoader(oldRoot))
		if err != nil {
			t.Fatal(err)
		}
		var roots []string
		for _, rc := range r.Roots {
			roots = append(roots, rc.New.Name())
		}
		if got := strings.Join(sorted(roots), " "); got != "lib-1.1.drv tool.drv" {
			t.Errorf("roots = %s, want lib-1.1.drv tool.drv", got)
		}
		for _, c := range r.Changed {
			if c.New.Name() == "top.drv" && len(c.Causes) != 2 {
				t.Errorf("top's causes = %v, want both roots", c.Causes)
			}
		}
	})
	t.Run("identical plans", func(t *testing.T) {
		r, err := Diff(t.Context(), old, old, DirLoader(oldRoot), DirLoader(oldRoot))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Changed) != 0 || len(r.Roots) != 0 {
			t.Errorf("identical plans differ: %+v", r)
		}
	})
}
