package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/bench/gen/graphgen"
	"github.com/nbuild/nbuild/store"
)

// Workload is one entry of the registry (Workloads): a named set of
// benchmark cases over corpora it prepares itself. Under go test,
// Benchmark<Name> runs it; another program runs each case with
// testing.Benchmark.
type Workload struct {
	Name  string // as in Benchmark<Name>, e.g. "DrvParse"
	Doc   string // one line: what it measures, and against what
	Needs Needs  // what must be installed or given in Env
	// Cases prepares the corpora (reading files, instantiating a graph,
	// asking the daemon) and returns the cases, named as go test names
	// the sub-benchmarks ("fixtures/nbuild"). An error here means a
	// corpus could not be made, e.g. a tool in Needs is missing.
	Cases func(ctx context.Context, env Env) ([]Case, error)
}

// Case is one benchmark of a workload: one corpus or size, one tool.
type Case struct {
	Name string
	Run  func(b *testing.B)
}

// Needs says what a workload needs beyond the Go toolchain's packages.
type Needs uint8

const (
	// NeedsTestdata: Env.Testdata, the repository's testdata directory.
	NeedsTestdata Needs = 1 << iota
	// NeedsNix: Nix's tools on PATH (nix-instantiate to generate a graph
	// corpus not yet cached, nix-store to run the anchor tool).
	NeedsNix
	// NeedsDaemon: a nix-daemon listening at Env.DaemonSocket, with a
	// store to read; it adds one 64 MiB path to it.
	NeedsDaemon
	// NeedsGo: the go command, to find GOROOT, unless Env.Goroot is set.
	NeedsGo
)

// String lists the needs, e.g. "testdata,nix"; "" for none.
func (n Needs) String() string {
	var s []string
	for _, x := range []struct {
		bit  Needs
		name string
	}{{NeedsTestdata, "testdata"}, {NeedsNix, "nix"}, {NeedsDaemon, "daemon"}, {NeedsGo, "go"}} {
		if n&x.bit != 0 {
			s = append(s, x.name)
		}
	}
	return strings.Join(s, ",")
}

// Env tells workloads where things are. The zero value suits a machine
// with Nix installed the usual way, except Testdata, which has no
// default: a program built from the module does not know where a
// checkout of it is.
type Env struct {
	// Testdata is the repository's testdata directory (NeedsTestdata).
	Testdata string
	// CacheDir keeps generated corpora; "" is graphgen.CacheDir().
	CacheDir string
	// DaemonSocket is the nix-daemon's socket; "" is store.DaemonSocket.
	DaemonSocket string
	// StoreDir is where the daemon's store paths can be listed; "" is
	// store.StoreDir.
	StoreDir string
	// Goroot is the Go tree NAR corpora are made of; "" asks Goroot.
	Goroot string
	// TempDir holds scratch files while corpora are made; "" is
	// os.TempDir().
	TempDir string
}

func (e Env) cacheDir() string     { return or(e.CacheDir, graphgen.CacheDir()) }
func (e Env) daemonSocket() string { return or(e.DaemonSocket, store.DaemonSocket) }
func (e Env) storeDir() string     { return or(e.StoreDir, store.StoreDir) }
func (e Env) tempDir() string      { return or(e.TempDir, os.TempDir()) }

func (e Env) goroot() (string, error) {
	if e.Goroot != "" {
		return e.Goroot, nil
	}
	return Goroot()
}

func (e Env) testdata() (string, error) {
	if e.Testdata == "" {
		return "", fmt.Errorf("bench: Env.Testdata is not set (the repository's testdata directory)")
	}
	return e.Testdata, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Workloads returns the registry: every workload package bench runs as a
// Benchmark function, in a fixed order. Each call returns a new slice.
func Workloads() []Workload {
	return []Workload{
		{Name: "DrvParse", Needs: NeedsTestdata, Cases: eachDrvCorpus(drvParseCases),
			Doc: "drv.Parse, ParseShared, Recycle and an interner against go-nix's ReadDerivation, per drv corpus"},
		{Name: "DrvParsePaired", Needs: NeedsTestdata, Cases: eachDrvCorpus(drvParsePairedCases),
			Doc: "go-nix's parse time over nbuild's from alternating passes in one process (x-go-nix)"},
		{Name: "DrvWrite", Needs: NeedsTestdata, Cases: eachDrvCorpus(drvWriteCases),
			Doc: "drv.AppendATerm of each drv corpus into a reused buffer"},
		{Name: "DrvPaths", Needs: NeedsTestdata, Cases: eachDrvCorpus(drvPathsCases),
			Doc: "every .drv path and output path of the store corpora, hashDerivationModulo from scratch"},
		{Name: "GraphLoad", Needs: NeedsNix, Cases: graphLoadCases,
			Doc: "graph.Load of generated closures (500 to 20,000 drvs), beside parse-only, read-only and snapshot loads"},
		{Name: "Plan", Needs: NeedsNix, Cases: planCases,
			Doc: "a warm nbuild graph summary in one process (snapshot, validity, plan.New, summary), whole and by phase, 3,500 to 100,001 drvs"},
		{Name: "NarDumpHash", Needs: NeedsGo, Cases: narDumpHashCases,
			Doc: "NAR hash of GOROOT trees (walk, read, serialise, SHA-256) against SHA-256 alone"},
		{Name: "NarRead", Needs: NeedsGo, Cases: narReadCases,
			Doc: "nbuild's NAR reader against go-nix's on GOROOT trees and 20,000 tiny files"},
		{Name: "NarCompress", Needs: NeedsGo, Cases: narCompressCases,
			Doc: "zstd and xz of 4 and 32 MiB of the Go source NAR at concurrency 1 and 2"},
		{Name: "DaemonQuery", Needs: NeedsNix | NeedsDaemon, Cases: daemonQueryCases,
			Doc: "validity and path infos of 3,000 store paths over the worker protocol against nix-store -q --hash"},
		{Name: "DaemonNar", Needs: NeedsNix | NeedsDaemon, Cases: daemonNarCases,
			Doc: "NarFromPath of one 64 MiB path and of 100 store paths against nix-store --dump"},
		{Name: "Sched", Cases: schedCases,
			Doc: "simulated critical-path scheduling of 3,000 and 10,000 synthetic jobs: overhead and makespan against bounds and Nix's policy"},
	}
}

// FindWorkload returns the workload of Workloads named name.
func FindWorkload(name string) (Workload, error) {
	var names []string
	for _, w := range Workloads() {
		if w.Name == name {
			return w, nil
		}
		names = append(names, w.Name)
	}
	return Workload{}, fmt.Errorf("bench: no workload %q (have %s)", name, strings.Join(names, ", "))
}
