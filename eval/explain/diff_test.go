package explain

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/storetest"
)

// instantiateFile instantiates attr of the testdata expression file into a
// chroot store at root.
func instantiateFile(t *testing.T, root, file, attr string) store.Path {
	t.Helper()
	storetest.RequireNix(t)
	b, err := exec.Command("nix-instantiate", "--store", root, filepath.Join("..", "..", "testdata", "nix", file), "-A", attr).Output()
	if err != nil {
		t.Fatalf("nix-instantiate %s -A %s: %v", file, attr, err)
	}
	return store.MustParsePath(strings.TrimSpace(string(b)))
}

// nixDrvClosure is the sorted .drv paths `nix-store -qR` lists for p.
func nixDrvClosure(t *testing.T, root string, p store.Path) []string {
	t.Helper()
	b, err := exec.Command("nix-store", "--store", root, "-qR", p.String()).Output()
	if err != nil {
		t.Fatalf("nix-store -qR %s: %v", p, err)
	}
	var out []string
	for _, l := range strings.Fields(string(b)) {
		if strings.HasSuffix(l, ".drv") {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

// comm returns the lines of a not in b (both sorted), as `comm -23`.
func comm(a, b []string) []string {
	in := map[string]bool{}
	for _, s := range b {
		in[s] = true
	}
	out := []string{}
	for _, s := range a {
		if !in[s] {
			out = append(out, s)
		}
	}
	return out
}

// TestDiffAgainstNix checks Diff on v1/v2 pairs instantiated by real Nix,
// in both directions, against the closures nix-store -qR lists: the
// changed derivations are exactly those of one closure not in the other,
// no root cause is in both closures, and every changed derivation is
// explained by root causes.
func TestDiffAgainstNix(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	pairs := []struct {
		v1, v2, attr string
	}{
		{"explain-v1.nix", "explain-v2.nix", "system"},
		{"diff-v1.nix", "diff-v2.nix", "devshell"},
		{"diff-v1.nix", "diff-v2.nix", "website"},
	}
	for _, pr := range pairs {
		a := instantiateFile(t, root, pr.v1, pr.attr)
		b := instantiateFile(t, root, pr.v2, pr.attr)
		ca, cb := nixDrvClosure(t, root, a), nixDrvClosure(t, root, b)
		loaders := []struct {
			name string
			load Loader
		}{
			{"dir", DirLoader(root)},
			{"graph", GraphLoader(t.Context(), root, []store.Path{a, b})},
		}
		for _, dir := range []struct {
			name     string
			old, cur store.Path
			oc, nc   []string
		}{{"forward", a, b, ca, cb}, {"reverse", b, a, cb, ca}} {
			for _, l := range loaders {
				t.Run(pr.v1+":"+pr.attr+":"+dir.name+":"+l.name, func(t *testing.T) {
					r, err := Diff(t.Context(), []store.Path{dir.cur}, []store.Path{dir.old}, l.load, l.load)
					if err != nil {
						t.Fatal(err)
					}
					checkDiff(t, r, dir.nc, dir.oc)
				})
			}
		}
	}
}

func checkDiff(t *testing.T, r *DiffResult, newClosure, oldClosure []string) {
	t.Helper()
	var changed []string
	for _, c := range r.Changed {
		changed = append(changed, c.New.String())
	}
	sort.Strings(changed)
	if want := comm(newClosure, oldClosure); strings.Join(changed, "\n") != strings.Join(want, "\n") {
		t.Errorf("changed:\n%s\nwant (comm -13 of the closures):\n%s", strings.Join(changed, "\n"), strings.Join(want, "\n"))
	}
	gone := pathStrings(r.Gone)
	if want := comm(oldClosure, newClosure); strings.Join(gone, "\n") != strings.Join(want, "\n") {
		t.Errorf("gone:\n%s\nwant (comm -23 of the closures):\n%s", strings.Join(gone, "\n"), strings.Join(want, "\n"))
	}
	inOld := map[string]bool{}
	for _, p := range oldClosure {
		inOld[p] = true
	}
	roots := map[store.Path]bool{}
	total := 0
	for _, rc := range r.Roots {
		roots[rc.New] = true
		total += rc.Explains
		if inOld[rc.New.String()] {
			t.Errorf("root cause %s is in both closures", rc.New)
		}
		if !rc.IsCause() {
			t.Errorf("root cause %s has an old version and no change of its own", rc.New)
		}
		if !rc.Old.IsZero() && !inOld[rc.Old.String()] {
			t.Errorf("root cause %s: its old version %s is not in the old closure", rc.New, rc.Old)
		}
	}
	for _, c := range r.Changed {
		if len(c.Causes) == 0 {
			t.Errorf("%s changed for no cause", c.New)
		}
		for _, p := range c.Causes {
			if !roots[p] {
				t.Errorf("%s: cause %s is not a root cause", c.New, p)
			}
		}
	}
	if len(r.Changed) > 0 && total < len(r.Changed) {
		t.Errorf("root causes explain %d derivations of %d", total, len(r.Changed))
	}
}

// TestDiffExplainPair checks what the explain-v1/v2 pair is made to show.
func TestDiffExplainPair(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	old := instantiateFile(t, root, "explain-v1.nix", "system")
	cur := instantiateFile(t, root, "explain-v2.nix", "system")
	load := DirLoader(root)
	r, err := Diff(t.Context(), []store.Path{cur}, []store.Path{old}, load, load)
	if err != nil {
		t.Fatal(err)
	}
	causes := map[string]*RootCause{}
	for i := range r.Roots {
		causes[strings.TrimSuffix(r.Roots[i].New.Name(), ".drv")] = &r.Roots[i]
	}
	var names []string
	for n := range causes {
		names = append(names, n)
	}
	sort.Strings(names)
	// The libpng bump (its source and version), coreutils' flags, nginx's
	// postInstall, the added perl-doc-tools and the system that lists it.
	if got, want := strings.Join(names, " "), "coreutils-9.1 libpng-1.6.40 nginx-1.22.1 nixos-system-box-23.05 perl-doc-tools-1 source"; got != want {
		t.Fatalf("root causes %s, want %s", got, want)
	}
	if c := causes["perl-doc-tools-1"]; !c.Old.IsZero() || c.Explains != 2 {
		t.Errorf("perl-doc-tools: old %v, explains %d; want no old version, explains 2 (itself and the system)", c.Old, c.Explains)
	}
	if c := causes["libpng-1.6.40"]; c.Old.Name() != "libpng-1.6.39.drv" || c.Explains != 7 {
		t.Errorf("libpng: old %s, explains %d; want libpng-1.6.39.drv, 7", c.Old.Name(), c.Explains)
	}
	edits := func(name, what string) []Edit {
		for _, ch := range causes[name].Own {
			if ch.What == what {
				return ch.Edits
			}
		}
		t.Fatalf("%s: no change of %s in %+v", name, what, causes[name].Own)
		return nil
	}
	var changedOnly []string
	for _, e := range edits("coreutils-9.1", "env configureFlags") {
		if e.Op != "=" {
			changedOnly = append(changedOnly, e.Op+strings.TrimSpace(e.Text))
		}
	}
	if got := strings.Join(changedOnly, " "); got != "---disable-libselinux +--enable-libselinux" {
		t.Errorf("configureFlags edits %q, want the one word", got)
	}
	changedOnly = nil
	for _, e := range edits("nginx-1.22.1", "env postInstall") {
		if e.Op != "=" {
			changedOnly = append(changedOnly, e.Op+strings.TrimSpace(e.Text))
		}
	}
	if got := strings.Join(changedOnly, "|"); got != "---replace /var/log/nginx /var/log/nginx|+--replace /var/log/nginx /var/log/nginx/access" {
		t.Errorf("postInstall edits %q, want the one line", got)
	}
	var text bytes.Buffer
	if err := WriteDiffText(&text, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"11 derivation(s) rebuild because of these 6 change(s)",
		"10 of the old one are not in the new one",
		"[---disable-libselinux-] {+--enable-libselinux+}",
		"    -   --replace /var/log/nginx /var/log/nginx\n    +   --replace /var/log/nginx /var/log/nginx/access\n",
		"perl-doc-tools-1.drv (new, explains 2)",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}

	t.Run("json round trip", func(t *testing.T) {
		var js bytes.Buffer
		if err := WriteDiffJSON(&js, r); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{`"changedCount": 11`, `"goneCount": 10`, `"causes": [`, `"attribute": "env configureFlags"`, `"op": "+"`} {
			if !strings.Contains(js.String(), key) {
				t.Errorf("JSON lacks %s", key)
			}
		}
		back, err := ReadDiffJSON(bytes.NewReader(js.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Errorf("round trip differs:\n%+v\nwant\n%+v", back, r)
		}
	})
}

func TestDiffText(t *testing.T) {
	id := func(s string) string { return s }
	cases := []struct {
		old, new string
		want     string // edits as op+text|...
	}{
		{"a b c", "a x c", "=a|- b|+ x|= c"},
		{"a b c", "a b c d", "=a b c|+ d"},
		{"", "x", "+x"},
		{"l1\nl2\nl3\n", "l1\nL2\nl3\n", "=l1\n|-l2\n|+L2\n|=l3\n"},
		{"a  b", "a b", "-a  b|+a b"}, // spaces only: shown whole
	}
	for _, tc := range cases {
		var got []string
		for _, e := range diffText(tc.old, tc.new, id) {
			got = append(got, e.Op+e.Text)
		}
		if g := strings.Join(got, "|"); g != tc.want {
			t.Errorf("diffText(%q, %q) = %q, want %q", tc.old, tc.new, g, tc.want)
		}
	}
}
