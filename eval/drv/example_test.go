package drv_test

import (
	"fmt"
	"log"
	"os"

	"github.com/nbuild/nbuild/eval/drv"
)

// Parse a .drv that Nix 2.8 wrote, recompute its own store path and its
// output paths (hashDerivationModulo over its inputs), and check them
// against what the file declares.
func ExampleParse() {
	const root = "../../testdata/store" // a chroot store: files under root/nix/store
	const path = "/nix/store/y87xq6mpa4a03nqghrinyx9grzjyds06-hello-aarch64-unknown-linux-gnu-2.12.1.drv"
	data, err := os.ReadFile(root + path)
	if err != nil {
		log.Fatal(err)
	}
	d, err := drv.Parse(data)
	if err != nil {
		log.Fatal(err)
	}
	self, err := drv.DrvPath(d)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("drv path matches:", self.String() == path)

	// Output paths depend on the input derivations' hashes: the Hasher
	// loads them from the same store.
	h := drv.NewHasher(drv.FileLoader(root))
	outs, err := h.OutputPaths(d)
	if err != nil {
		log.Fatal(err)
	}
	for i, o := range outs {
		fmt.Printf("%s: %s (declared: %v)\n", o.Name, o.Path.Name(), o.Path == d.Outputs[i].Path)
	}
	fmt.Println("system:", d.Platform)
	// Output:
	// drv path matches: true
	// out: hello-aarch64-unknown-linux-gnu-2.12.1 (declared: true)
	// system: aarch64-linux
}
