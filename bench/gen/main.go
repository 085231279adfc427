// Command gen writes a large synthetic, nixpkgs-shaped derivation graph
// and instantiates it with real nix-instantiate into a chroot store, for
// benchmarks:
//
//	go run ./bench/gen -n 3500 -out /tmp/nbuild-bench/graph-3500
//
// prints the root .drv path, then the number and total size of the .drv
// files. Running it again with the same -n and -seed reuses the store.
// See package graphgen for the graph's shape.
//
// With -load it then loads the root's closure with eval/graph and reports
// the time and the process's peak RSS: a whole-process figure to set
// beside `nix-store -q --tree` (hyperfine -n gen 'gen -out DIR -load');
// -snapshots DIR loads from the graph snapshot a first run saved there.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nbuild/nbuild/bench/gen/graphgen"
	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/store"
)

func main() {
	n := flag.Int("n", 3500, "number of derivations")
	seed := flag.Uint64("seed", 0, "random seed")
	out := flag.String("out", "", "chroot store directory (required)")
	load := flag.Bool("load", false, "load the closure with eval/graph and report time and peak RSS")
	jobs := flag.Int("j", 0, "with -load: graph.Options.Concurrency (0: the default)")
	snapshots := flag.String("snapshots", "", "with -load: graph.Options.SnapshotDir (a warm load after the first, as nbuild graph does)")
	from := flag.String("from", "", "with -load: the store root to load from (default: -out; / for /nix/store,\nafter nix-instantiate DIR/graph.nix -A root put it there)")
	flag.Parse()
	if *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: gen [-n N] [-seed S] -out DIR")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	p := graphgen.Params{N: *n, Seed: *seed}
	rootPath, ok := graphgen.CachedRoot(*out, p)
	if !ok || !*load {
		c, err := graphgen.Instantiate(ctx, *out, p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
		if !*load {
			fmt.Println(c.Root)
			fmt.Fprintf(os.Stderr, "%d derivations, %d bytes of .drv files in %s\n", c.Drvs, c.DrvBytes, c.Dir)
			return
		}
		rootPath = c.Root
	}
	// Only the load is timed; a cached corpus is not even listed, so a
	// whole-process timing is startup plus Load.
	root, err := store.ParsePath(rootPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	// The collector as `nbuild graph` sets it for a load (an explicit
	// GOGC wins), so that this whole-process figure is the command's.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	start := time.Now()
	if *from == "" {
		*from = *out
	}
	g, err := graph.Load(ctx, *from, []store.Path{root}, graph.Options{Concurrency: *jobs, SnapshotDir: *snapshots})
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	elapsed := time.Since(start)
	how := "from the .drv files"
	if g.FromSnapshot() {
		how = "from a snapshot"
	}
	fmt.Printf("%d derivations loaded %s in %v; depth %d; peak RSS %s\n",
		g.Len(), how, elapsed.Round(time.Microsecond), g.MaxDepth(), peakRSS())
}

// peakRSS returns VmHWM from /proc/self/status ("" where there is none).
func peakRSS() string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
