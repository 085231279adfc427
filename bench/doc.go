// Package bench holds nbuild's benchmarks as exported workloads, so that
// go test and any other Go program run the same code.
//
// # Vocabulary
//
// A corpus is the input a benchmark reads, made once before timing:
// .drv files in memory (DrvCorpus: the fixtures real Nix wrote into the
// repository's testdata/store, large escaped scripts, or a generated
// closure), a NAR in memory (NarCorpus: a tree of GOROOT, or many tiny
// files), a synthetic job graph (SchedWorkload), or paths of the local
// Nix store. Constructors such as FixtureDrvs, ReadDrvCorpus,
// GraphCorpus, TreeCorpus, DaemonPaths and DaemonBigPath return an error,
// never stop the program, and take the directory they read from; one
// that needs an outside tool (Nix, the go command) returns an error
// wrapping exec.ErrNotFound without it. Large corpora are generated
// (package graphgen, command bench/gen) and cached outside the
// repository, in graphgen.CacheDir.
//
// A benchmark function, such as DrvParse or NarRead, is a
// func(*testing.B) given its corpus: it times the loop with b.Loop and
// reports allocations, bytes per op (so MB/s) and the metrics that
// matter to it (ns/path, ns/entry, ratio, cpu-ns/op).
//
// A workload is a named entry of the registry, Workloads: a one-line Doc,
// what it Needs (the repository's testdata directory, Nix, a nix-daemon,
// the go command) and Cases, which makes the corpora from an Env and
// returns the cases, one benchmark function on one corpus or size each,
// named as go test names sub-benchmarks ("fixtures/nbuild",
// "drvs=3520/workers=1"). The package's Benchmark<Name> functions run the
// workload Name and nothing else; under go test a workload whose tools
// are missing is skipped, or fails when CI=true.
//
// An anchor tool is what a workload compares nbuild with on the same
// corpus in the same run: go-nix's parser and NAR reader, nix-store
// --dump and -q --hash, Nix's scheduling policy in the simulator.
//
// A paired benchmark (DrvParsePaired) alternates one pass of nbuild and
// one of the anchor tool inside each op, timed by process CPU time, and
// reports the median ratio of the two: on a shared machine whose speed
// drifts, both passes of a pair see the same speed.
//
// BENCHMARKS.md, at the repository's root, records measured figures:
// the machine, the date and load, each workload's result against the
// anchor tool and against its issue's target, and whether the target is
// met; the bench/NOTES-*.md files keep the raw outputs and profiles
// behind them. The copy tests (TestCopy*) are whole-process comparisons
// of nbuild copy and nix-copy-closure run by hyperfine, not workloads;
// their doc comments say how to run them.
//
// # Running
//
// From a checkout, every benchmark (make bench does the same):
//
//	go test -run '^$' -bench . -benchmem ./bench
//
// one workload, one case, as BENCHMARKS.md quotes them:
//
//	go test -run '^$' -bench 'DrvParse/fixtures/nbuild-shared' -benchtime 1s -count 5 ./bench
//
// and from another program, each case with testing.Benchmark:
//
//	w, err := bench.FindWorkload("DrvParse")
//	...
//	cases, err := w.Cases(ctx, bench.Env{Testdata: "/src/nbuild/testdata"})
//	...
//	for _, c := range cases {
//		fmt.Println(c.Name, testing.Benchmark(c.Run))
//	}
//
// Run each case on its own: testing.Benchmark folds the results of
// sub-benchmarks started with b.Run into one.
package bench
