// Command gen writes a large synthetic, nixpkgs-shaped derivation graph
// and instantiates it with real nix-instantiate into a chroot store, for
// benchmarks:
//
//	go run ./bench/gen -n 3500 -out /tmp/nbuild-bench/graph-3500
//
// prints the root .drv path, then the number and total size of the .drv
// files. Running it again with the same -n and -seed reuses the store.
// See package graphgen for the graph's shape.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/nbuild/nbuild/bench/gen/graphgen"
)

func main() {
	n := flag.Int("n", 3500, "number of derivations")
	seed := flag.Uint64("seed", 0, "random seed")
	out := flag.String("out", "", "chroot store directory (required)")
	flag.Parse()
	if *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: gen [-n N] [-seed S] -out DIR")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c, err := graphgen.Instantiate(ctx, *out, graphgen.Params{N: *n, Seed: *seed})
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	fmt.Println(c.Root)
	fmt.Fprintf(os.Stderr, "%d derivations, %d bytes of .drv files in %s\n", c.Drvs, c.DrvBytes, c.Dir)
}
