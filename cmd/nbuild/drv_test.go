package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/store/storetest"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cmdEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	code = runMain(context.Background(), env, args)
	return code, out.String(), errb.String()
}

// kindsRoots reads testdata/roots/kinds.txt: attribute -> .drv path.
func kindsRoots(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../../testdata/roots/kinds.txt")
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		a, p, _ := strings.Cut(line, " ")
		res[a] = p
	}
	return res
}

// TestDrvShowGolden: `nbuild drv show -r` prints, byte for byte, what
// `nix show-derivation -r` printed for every kinds.nix root.
func TestDrvShowGolden(t *testing.T) {
	for attr, p := range kindsRoots(t) {
		want, err := os.ReadFile(filepath.Join("../../testdata/golden/kinds", attr+".show.json"))
		if err != nil {
			t.Fatal(err)
		}
		code, out, errs := runCmd(t, "drv", "show", "-r", "--store", "../../testdata/store", p)
		if code != 0 || out != string(want) {
			t.Errorf("%s: exit %d, stderr %q; output differs from golden:\n%s", attr, code, errs, out)
		}
	}
}

// TestDrvShowGoldenAll: the same for every fixture root (the cross
// systems are closures of a few hundred derivations), and for several
// roots at once, whose closures overlap.
func TestDrvShowGoldenAll(t *testing.T) {
	files, err := filepath.Glob("../../testdata/roots/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixture roots: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".txt")
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			attr, p, _ := strings.Cut(line, " ")
			want, err := os.ReadFile(filepath.Join("../../testdata/golden", name, attr+".show.json"))
			if err != nil {
				t.Fatal(err)
			}
			code, out, errs := runCmd(t, "drv", "show", "-r", "--store", "../../testdata/store", p)
			if code != 0 || out != string(want) {
				t.Errorf("%s %s: exit %d, stderr %q; output differs from nix show-derivation -r", name, attr, code, errs)
			}
		}
	}
}

// TestDrvShowLive compares with nix show-derivation -r run now, on a
// closure instantiated now, with several overlapping roots.
func TestDrvShowLive(t *testing.T) {
	storetest.RequireNix(t)
	root := filepath.Join(t.TempDir(), "store")
	var roots []string
	for _, a := range []string{"system-aarch64", "sdk-aarch64", "vm-test"} {
		out, err := exec.Command("nix-instantiate", "--store", root, "../../testdata/nix/cross.nix", "-A", a).Output()
		if err != nil {
			t.Fatalf("nix-instantiate -A %s: %v", a, err)
		}
		roots = append(roots, strings.TrimSpace(string(out)))
	}
	want, err := exec.Command("nix", append([]string{"--extra-experimental-features", "nix-command", "--store", root, "show-derivation", "-r"}, roots...)...).Output()
	if err != nil {
		t.Fatalf("nix show-derivation -r: %v", err)
	}
	code, out, errs := runCmd(t, append([]string{"drv", "show", "-r", "--store", root}, roots...)...)
	if code != 0 || out != string(want) {
		t.Errorf("exit %d, stderr %q; %d bytes, nix printed %d", code, errs, len(out), len(want))
	}
}

func TestDrvCheck(t *testing.T) {
	roots := kindsRoots(t)
	args := []string{"drv", "check", "-r", "--store", "../../testdata/store"}
	for _, p := range roots {
		args = append(args, p)
	}
	if code, _, errs := runCmd(t, args...); code != 0 {
		t.Fatalf("check of the fixtures: exit %d\n%s", code, errs)
	}

	// A tampered copy: an output path changed, the file named after its new
	// contents (so only the output path is wrong), and a copy whose builder
	// changed but whose name did not.
	data, err := os.ReadFile(filepath.Join("../../testdata/store", roots["ia-multi"]))
	if err != nil {
		t.Fatal(err)
	}
	d, err := drv.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "nix/store"), 0o755); err != nil {
		t.Fatal(err)
	}
	if len(d.InputDrvs) != 0 {
		t.Fatal("ia-multi has inputs: copy them into the temp store too")
	}
	wrongOut := d.Outputs[1].Path
	d.Outputs[0].Path = wrongOut
	dp, err := drv.DrvPath(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, dp.String()), d.AppendATerm(nil), 0o644); err != nil {
		t.Fatal(err)
	}
	renamed := strings.Replace(string(data), `"/bin/sh"`, `"/bin/sx"`, 1)
	if err := os.WriteFile(filepath.Join(root, roots["ia-multi"]), []byte(renamed), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCmd(t, "drv", "check", "--store", root, dp.String(), roots["ia-multi"])
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, errs)
	}
	for _, want := range []string{
		dp.String() + ": output 'dev' has path '" + wrongOut.String() + "', should be '",
		roots["ia-multi"] + ": .drv path should be ",
		roots["ia-multi"] + ": output 'dev' has path",
		"mismatches in 2 derivations checked",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

// TestDrvShowMissingInput: a closure with a .drv missing names it and
// the derivation that needs it, in the user's terms.
func TestDrvShowMissingInput(t *testing.T) {
	root := t.TempDir()
	sys := fixtureRoot(t, "explain-v2", "system")
	data, err := os.ReadFile(filepath.Join(testStore, sys))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "nix/store"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, sys), data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCmd(t, "drv", "show", "-r", "--store", root, sys)
	if code != 1 || !strings.Contains(errs, "', an input of '"+sys+"', does not exist in the store at "+root) || strings.Contains(errs, "graph:") {
		t.Errorf("exit %d, %q", code, errs)
	}
	_, errs, code = run(t, graphArgs("--store", root, "--why", "perl", root+sys)...)
	if code != 1 || !strings.Contains(errs, "' does not exist in the store at "+root) {
		t.Errorf("--why: exit %d, %q", code, errs)
	}
}

func TestDrvUsage(t *testing.T) {
	for _, args := range [][]string{{"drv"}, {"drv", "frob"}, {"drv", "show"}, {"drv", "check", "--bogus", "x"}} {
		if code, _, _ := runCmd(t, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	if code, _, errs := runCmd(t, "drv", "show", "--store", "../../testdata/store", "/nix/store/00000000000000000000000000000000-none.drv"); code != 1 || errs == "" {
		t.Errorf("missing drv: exit %d, %q", code, errs)
	}
}
