package drv_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/eval/drv"
)

// TestHasherNamesMissingInput: with an input .drv missing from the store,
// the error names the derivation that needs it and the missing input,
// once, whether the missing one is a direct or a deeper input.
func TestHasherNamesMissingInput(t *testing.T) {
	const hello = "/nix/store/y87xq6mpa4a03nqghrinyx9grzjyds06-hello-aarch64-unknown-linux-gnu-2.12.1.drv"
	src := "../../testdata/store"
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, hello))
	if err != nil {
		t.Fatal(err)
	}
	d, err := drv.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	// Remove an input of an input: the deeper derivation must be named.
	var mid, deep string
	for _, x := range d.InputDrvs {
		in, err := drv.FileLoader(root)(x.Path.String())
		if err != nil {
			t.Fatal(err)
		}
		if len(in.InputDrvs) > 0 {
			mid, deep = x.Path.String(), in.InputDrvs[0].Path.String()
			break
		}
	}
	if deep == "" {
		t.Fatal("no input of the fixture has inputs of its own")
	}
	if err := os.Remove(filepath.Join(root, deep)); err != nil {
		t.Fatal(err)
	}
	_, err = drv.NewHasher(drv.FileLoader(root)).OutputPaths(d)
	var ie *drv.InputError
	if !errors.As(err, &ie) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want an InputError wrapping ErrNotExist", err)
	}
	if ie.Input != deep || ie.Drv != mid {
		t.Errorf("InputError{Drv: %s, Input: %s}, want %s needing %s", ie.Drv, ie.Input, mid, deep)
	}
	if strings.Count(err.Error(), deep) != 2 || strings.Count(err.Error(), "input derivation") != 1 || !strings.HasPrefix(err.Error(), "drv: "+mid+": ") {
		// the input is named, and again by the file error; no doubled prefixes
		t.Errorf("message %q", err)
	}
}
