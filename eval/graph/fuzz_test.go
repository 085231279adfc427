package graph_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/store"
)

// FuzzLoad loads a closure whose root .drv holds the fuzzer's bytes and
// may name the store's other derivations (a leaf, a missing one, the root
// itself): Load never panics, and a graph it returns keeps its promises.
func FuzzLoad(f *testing.F) {
	for _, fx := range []string{"cross/sdk-aarch64", "plan/app", "diff-v2/devshell"} {
		dir, attr := filepath.Split(fx)
		data, err := os.ReadFile(filepath.Join(storeRoot, rootOfFile(f, filepath.Clean(dir), attr).String()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	leaf := fakePath("leaf.drv")
	f.Add([]byte(`Derive([("out","` + fakePath("root").String() + `","","")],[("` + leaf.String() +
		`",["out"])],[],"x86_64-linux","/bin/sh",[],[("name","root")])`))
	f.Add([]byte(`Derive([("out","` + fakePath("root").String() + `","","")],[("` + fakePath("root.drv").String() +
		`",["out"])],[],"x86_64-linux","/bin/sh",[],[("name","root")])`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newFakeStore(t)
		s.drv("leaf")
		root := fakePath("root.drv")
		s.write(root, string(data))
		g, err := graph.Load(context.Background(), s.root, []store.Path{root}, graph.Options{Concurrency: 2})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		checkInvariants(t, g)
	})
}
