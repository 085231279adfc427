package bench_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/nbuild/nbuild/bench"
)

// Another program lists the registry and what each workload needs.
func ExampleWorkloads() {
	for _, w := range bench.Workloads() {
		fmt.Printf("%s [%s]\n", w.Name, w.Needs)
	}
	// Output:
	// DrvParse [testdata]
	// DrvParsePaired [testdata]
	// DrvWrite [testdata]
	// DrvPaths [testdata]
	// GraphLoad [nix]
	// Plan [nix]
	// NarDumpHash [go]
	// NarRead [go]
	// NarCompress [go]
	// DaemonQuery [nix,daemon]
	// DaemonNar [nix,daemon]
	// Sched []
}

// A workload function runs under testing.Benchmark on a corpus made
// outside go test: here nbuild's parser over the .drv fixtures of a
// checkout, whose testdata directory is passed explicitly.
func Example_testingBenchmark() {
	fixtures, err := bench.FixtureDrvs("../testdata")
	if err != nil {
		fmt.Println(err)
		return
	}
	r := testing.Benchmark(func(b *testing.B) { bench.DrvParseShared(b, fixtures) })
	fmt.Println(r.N > 0, r.Bytes == fixtures.Bytes)
	// Output: true true
}

// A whole workload runs case by case, each case its own testing.Benchmark
// (testing.Benchmark folds the results of b.Run sub-benchmarks into one).
func ExampleWorkload_Cases() {
	w, err := bench.FindWorkload("DrvWrite")
	if err != nil {
		fmt.Println(err)
		return
	}
	cases, err := w.Cases(context.Background(), bench.Env{Testdata: "../testdata"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range cases {
		r := testing.Benchmark(c.Run)
		fmt.Println(c.Name, r.N > 0) // and r.NsPerOp(), r.AllocsPerOp(), r.Extra...
	}
}
