package plan

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store/storetest"
)

// refsExpr has the shapes that make --tree and --graph interesting: a
// diamond, a source shared by several derivations, a multi-output input,
// and a drvPath string context, which puts a .drv and its closure into
// inputSrcs without making it a build input.
const refsExpr = `
let
  mk = name: deps: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo ${name} ${toString deps} > $out"]; };
  src = builtins.toFile "src.txt" "hello";
  a = mk "a" [ src ];
  b = mk "b" [ a ];
  c = mk "c" [ a b ];
  d = derivation { name = "d"; system = "x86_64-linux"; builder = "/bin/sh"; outputs = ["out" "dev"]; args = ["-c" "echo ${c} ${b.drvPath} > $out; echo > $dev"]; };
in { top = mk "top" [ d d.dev c ]; }
`

// instantiateChroot writes expr to a file and instantiates attr into a
// fresh chroot store, returning the store root and the .drv path.
func instantiateChroot(t *testing.T, expr, attr string) (root, drvPath string) {
	t.Helper()
	storetest.RequireNix(t)
	dir := t.TempDir()
	root = filepath.Join(dir, "store")
	f := filepath.Join(dir, "expr.nix")
	if err := os.WriteFile(f, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nix-instantiate", "--store", root, f, "-A", attr).Output()
	if err != nil {
		t.Fatalf("nix-instantiate: %v", err)
	}
	return root, strings.TrimSpace(string(out))
}

// TestRefGraphMatchesNixStore feeds the reference relation Nix itself
// reports into writeTree and writeDot and requires byte-identical output
// to nix-store -q --tree and --graph.
func TestRefGraphMatchesNixStore(t *testing.T) {
	root, top := instantiateChroot(t, refsExpr, "top")
	refs := map[string][]string{}
	for _, p := range strings.Fields(storetest.NixStore(t, root, "-qR", top)) {
		refs[p] = strings.Fields(storetest.NixStore(t, root, "-q", "--references", p))
	}
	g, ids := refGraphOf(refs)
	var tree, dot bytes.Buffer
	if err := g.writeTree(&tree, []int32{ids[top]}, nil); err != nil {
		t.Fatal(err)
	}
	if want := storetest.NixStore(t, root, "-q", "--tree", top); tree.String() != want {
		t.Errorf("tree differs from nix-store -q --tree:\n got:\n%s\nwant:\n%s", tree.String(), want)
	}
	if err := g.writeDot(&dot, []int32{ids[top]}, nil); err != nil {
		t.Fatal(err)
	}
	if want := storetest.NixStore(t, root, "-q", "--graph", top); dot.String() != want {
		t.Errorf("dot differs from nix-store -q --graph:\n got:\n%s\nwant:\n%s", dot.String(), want)
	}
}

// refGraphOf builds a RefGraph from full paths and their references.
func refGraphOf(refs map[string][]string) (*RefGraph, map[string]int32) {
	g := &RefGraph{}
	ids := map[string]int32{}
	id := func(p string) int32 {
		if i, ok := ids[p]; ok {
			return i
		}
		ids[p] = g.add(p, nil)
		return ids[p]
	}
	for p, rs := range refs {
		from := id(p)
		for _, r := range rs {
			to := id(r) // may grow g.refs
			g.refs[from] = append(g.refs[from], to)
		}
	}
	g.finish()
	return g, ids
}

func TestTopoSortCycle(t *testing.T) {
	a, b := "/nix/store/00000000000000000000000000000000-a", "/nix/store/11111111111111111111111111111111-b"
	g, ids := refGraphOf(map[string][]string{a: {b}, b: {a}})
	_, err := newTopoSorter(g).sort([]int32{ids[a], ids[b]})
	if err == nil || !strings.Contains(err.Error(), "cycle detected") {
		t.Fatalf("want a cycle error, got %v", err)
	}
}

// TestAppendQuoted quotes as %q does.
func TestAppendQuoted(t *testing.T) {
	for _, s := range []string{"", "abc-1.0", "name\nx86_64-linux\nssh://b", `q"b\s`, "tab\t", "ü", "\x00\x7f", "a\nü"} {
		if got, want := string(appendQuoted([]byte("x"), s)), "x"+strconv.Quote(s); got != want {
			t.Errorf("appendQuoted(%q) = %s, want %s", s, got, want)
		}
	}
}
