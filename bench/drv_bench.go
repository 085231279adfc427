package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	gonix "github.com/nix-community/go-nix/pkg/derivation"

	"github.com/nbuild/nbuild/eval/drv"
)

// DrvCorpus is a set of .drv files held in memory, for parse benchmarks.
type DrvCorpus struct {
	Name  string
	Root  string   // chroot store root the files came from ("" if generated)
	Paths []string // store paths, parallel to Files
	Files [][]byte
	Bytes int64
}

// ReadDrvCorpus reads every .drv file of the chroot store at root (the
// files under root/nix/store).
func ReadDrvCorpus(name, root string) (DrvCorpus, error) {
	dir := filepath.Join(root, "nix/store")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return DrvCorpus{}, fmt.Errorf("bench: drv corpus %s: %w", name, err)
	}
	c := DrvCorpus{Name: name, Root: root}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".drv") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return DrvCorpus{}, fmt.Errorf("bench: drv corpus %s: %w", name, err)
		}
		c.Paths = append(c.Paths, "/nix/store/"+e.Name())
		c.Files = append(c.Files, data)
		c.Bytes += int64(len(data))
	}
	if len(c.Files) == 0 {
		return DrvCorpus{}, fmt.Errorf("bench: drv corpus %s: no .drv files in %s", name, dir)
	}
	return c, nil
}

// FixtureDrvs is every .drv real Nix wrote into the repository's fixture
// store, testdata/store (all output kinds, escapes, structured attrs;
// about 1 KB each); testdata is that testdata directory.
func FixtureDrvs(testdata string) (DrvCorpus, error) {
	return ReadDrvCorpus("fixtures", filepath.Join(testdata, "store"))
}

// ScriptDrvs is 16 derivations with 64 KB build scripts full of newlines,
// quotes and backslashes (the escaped-string path of the parsers), made by
// enlarging the derivations of base (FixtureDrvs in the benchmarks) in
// turn and writing them with drv.AppendATerm.
func ScriptDrvs(base DrvCorpus) (DrvCorpus, error) {
	if len(base.Files) == 0 {
		return DrvCorpus{}, fmt.Errorf("bench: script drvs: base corpus %s is empty", base.Name)
	}
	c := DrvCorpus{Name: "scripts"}
	line := "  if [ -n \"$out\" ]; then echo \"building \\\"$name\\\"\\tin $PWD\"; fi\n"
	for i := 0; i < 16; i++ {
		d, err := drv.Parse(base.Files[i%len(base.Files)])
		if err != nil {
			return DrvCorpus{}, fmt.Errorf("bench: script drvs: %w", err)
		}
		script := strings.Repeat(line, 64<<10/len(line))
		d.Env = append(d.Env, drv.EnvVar{Key: "~script", Value: script})
		data := d.AppendATerm(nil)
		c.Files = append(c.Files, data)
		c.Bytes += int64(len(data))
	}
	return c, nil
}

// GoNixSubset is the part of c that go-nix's ReadDerivation accepts (it
// rejects deferred outputs, for one), so both parsers get the same bytes.
func (c DrvCorpus) GoNixSubset() DrvCorpus {
	sub := DrvCorpus{Name: c.Name, Root: c.Root}
	for i, f := range c.Files {
		if _, err := gonix.ReadDerivation(bytes.NewReader(f)); err != nil {
			continue
		}
		if c.Paths != nil {
			sub.Paths = append(sub.Paths, c.Paths[i])
		}
		sub.Files = append(sub.Files, f)
		sub.Bytes += int64(len(f))
	}
	return sub
}

// cpuClock measures the process' CPU time (user + system, all threads, so
// the garbage collector's share counts) across a benchmark loop. On a
// shared, loaded machine wall-clock ns/op swings with the neighbours; CPU
// time per op much less, so the comparisons also report it.
type cpuClock struct{ start time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuClock { return cpuClock{processCPU()} }

// report adds cpu-ns/op and cpu-MB/s (bytes per op over CPU time).
func (c cpuClock) report(b *testing.B, bytes int64) {
	cpu := processCPU() - c.start
	if cpu <= 0 || b.N == 0 {
		return
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(bytes)*float64(b.N)/cpu.Seconds()/1e6, "cpu-MB/s")
}

// DrvParse benchmarks drv.Parse over a corpus; one op parses every file.
func DrvParse(b *testing.B, c DrvCorpus) {
	b.ReportAllocs()
	b.SetBytes(c.Bytes)
	clock := startCPU()
	defer clock.report(b, c.Bytes)
	for b.Loop() {
		for _, f := range c.Files {
			if _, err := drv.Parse(f); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// DrvParseShared benchmarks a reused drv.Parser's ParseShared: results
// share the input's memory (no copy of the file) and the Parser's blocks,
// as a loader that reads each file into its own buffer uses it.
func DrvParseShared(b *testing.B, c DrvCorpus) { drvParseShared(b, c, false) }

// DrvParseRecycle is DrvParseShared with Parser.Recycle before each parse,
// as eval/graph's loader uses it (it copies what it keeps out of each
// result): no allocation, so no garbage collection, in the loop; the
// parser's own work alone.
func DrvParseRecycle(b *testing.B, c DrvCorpus) { drvParseShared(b, c, true) }

func drvParseShared(b *testing.B, c DrvCorpus, recycle bool) {
	b.ReportAllocs()
	b.SetBytes(c.Bytes)
	var p drv.Parser
	clock := startCPU()
	defer clock.report(b, c.Bytes)
	for b.Loop() {
		for _, f := range c.Files {
			if recycle {
				p.Recycle()
			}
			if _, err := p.ParseShared(f); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// DrvParseIntern benchmarks a reused drv.Parser with a string interner, as
// a graph loader uses it.
func DrvParseIntern(b *testing.B, c DrvCorpus) {
	b.ReportAllocs()
	b.SetBytes(c.Bytes)
	strs := map[string]string{}
	p := &drv.Parser{Intern: func(k []byte) string {
		if s, ok := strs[string(k)]; ok {
			return s
		}
		s := string(k)
		strs[s] = s
		return s
	}}
	clock := startCPU()
	defer clock.report(b, c.Bytes)
	for b.Loop() {
		for _, f := range c.Files {
			if _, err := p.Parse(f); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// DrvParseGoNix benchmarks go-nix's derivation.ReadDerivation on the same
// files, for comparison.
func DrvParseGoNix(b *testing.B, c DrvCorpus) {
	b.ReportAllocs()
	b.SetBytes(c.Bytes)
	clock := startCPU()
	defer clock.report(b, c.Bytes)
	for b.Loop() {
		for _, f := range c.Files {
			if _, err := gonix.ReadDerivation(bytes.NewReader(f)); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// DrvParsePaired measures nbuild's parser against go-nix's the way a
// shared, drifting machine allows: each op is one pass of go-nix's
// ReadDerivation and one of a reused drv.Parser's ParseShared (with
// Recycle before each parse if recycle) over the corpus, in alternating
// order (nbuild first in every other pair), each timed by the process's
// CPU time. The collector runs as the two passes' allocation makes it,
// so a pass also pays for work on the other's garbage that spills into
// it: more often nbuild's, as go-nix allocates five times more. It reports the median
// over ops of go-nix's time over nbuild's ("x-go-nix"): both passes of a
// pair see the same machine, whatever its speed that second. A small
// corpus is parsed several times per pass (about 4 MB), so that a pass
// is long against the clock's resolution and the cold start after a
// collection.
func DrvParsePaired(b *testing.B, c DrvCorpus, recycle bool) {
	reps := max(1, int((4<<20)/max(c.Bytes, 1)))
	var p drv.Parser
	nbuild := func() {
		for range reps {
			for _, f := range c.Files {
				if recycle {
					p.Recycle()
				}
				if _, err := p.ParseShared(f); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	goNix := func() {
		for range reps {
			for _, f := range c.Files {
				if _, err := gonix.ReadDerivation(bytes.NewReader(f)); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	timed := func(pass func()) time.Duration {
		start := processCPU()
		pass()
		return processCPU() - start
	}
	var ratios []float64
	for i := 0; b.Loop(); i++ {
		var tn, tg time.Duration
		if i%2 == 0 {
			tn, tg = timed(nbuild), timed(goNix)
		} else {
			tg, tn = timed(goNix), timed(nbuild)
		}
		if tn > 0 {
			ratios = append(ratios, float64(tg)/float64(tn))
		}
	}
	if len(ratios) > 0 {
		slices.Sort(ratios)
		b.ReportMetric(ratios[len(ratios)/2], "x-go-nix")
	}
}

// DrvWrite benchmarks drv.AppendATerm into a reused buffer.
func DrvWrite(b *testing.B, c DrvCorpus) {
	drvs := parseAll(b, c)
	b.ReportAllocs()
	b.SetBytes(c.Bytes)
	var buf []byte
	for b.Loop() {
		for _, d := range drvs {
			buf = d.AppendATerm(buf[:0])
		}
	}
}

// DrvPaths benchmarks computing every .drv path and output path of a store
// corpus from scratch (a new Hasher each op, so every hashDerivationModulo
// is computed once per op); the derivations are parsed beforehand.
func DrvPaths(b *testing.B, c DrvCorpus) {
	drvs := parseAll(b, c)
	byPath := make(map[string]*drv.Derivation, len(drvs))
	for i, p := range c.Paths {
		byPath[p] = drvs[i]
	}
	load := func(p string) (*drv.Derivation, error) {
		if d, ok := byPath[p]; ok {
			return d, nil
		}
		return nil, os.ErrNotExist
	}
	b.ReportAllocs()
	b.SetBytes(c.Bytes)
	for b.Loop() {
		h := drv.NewHasher(load)
		for _, d := range drvs {
			if _, err := drv.DrvPath(d); err != nil {
				b.Fatal(err)
			}
			if _, err := h.OutputPaths(d); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func parseAll(b *testing.B, c DrvCorpus) []*drv.Derivation {
	drvs := make([]*drv.Derivation, len(c.Files))
	for i, f := range c.Files {
		d, err := drv.Parse(f)
		if err != nil {
			b.Fatal(err)
		}
		drvs[i] = d
	}
	return drvs
}

// drvCorpora are the parse workloads' corpora: the fixtures, large
// escaped scripts, and the generated 3,500-derivation closure when it is
// cached or nix-instantiate can make it (without Nix the others still run).
func drvCorpora(ctx context.Context, env Env) ([]DrvCorpus, error) {
	testdata, err := env.testdata()
	if err != nil {
		return nil, err
	}
	fx, err := FixtureDrvs(testdata)
	if err != nil {
		return nil, err
	}
	scripts, err := ScriptDrvs(fx)
	if err != nil {
		return nil, err
	}
	cs := []DrvCorpus{fx, scripts}
	g, err := GraphCorpus(ctx, env.cacheDir(), 3500)
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return cs, nil
	case err != nil:
		return nil, err
	}
	gc, err := ReadDrvCorpus("graph-3500", g.Dir)
	if err != nil {
		return nil, err
	}
	return append(cs, gc), nil
}

// eachDrvCorpus makes the cases of a drv workload: those cases returns
// for each of drvCorpora.
func eachDrvCorpus(cases func(c DrvCorpus) []Case) func(context.Context, Env) ([]Case, error) {
	return func(ctx context.Context, env Env) ([]Case, error) {
		corpora, err := drvCorpora(ctx, env)
		if err != nil {
			return nil, err
		}
		var all []Case
		for _, c := range corpora {
			all = append(all, cases(c)...)
		}
		return all, nil
	}
}

// drvParseCases compare nbuild's parser (plain, sharing its input,
// sharing and recycling, and reused with an interner) with go-nix's
// ReadDerivation on the same bytes: the files of each corpus that go-nix
// accepts.
func drvParseCases(c DrvCorpus) []Case {
	c = c.GoNixSubset()
	return []Case{
		{c.Name + "/nbuild", func(b *testing.B) { DrvParse(b, c) }},
		{c.Name + "/nbuild-shared", func(b *testing.B) { DrvParseShared(b, c) }},
		{c.Name + "/nbuild-recycle", func(b *testing.B) { DrvParseRecycle(b, c) }},
		{c.Name + "/nbuild-intern", func(b *testing.B) { DrvParseIntern(b, c) }},
		{c.Name + "/go-nix", func(b *testing.B) { DrvParseGoNix(b, c) }},
	}
}

// drvParsePairedCases report nbuild's parse speed as a multiple of
// go-nix's, from passes of both alternating in one process (see
// DrvParsePaired): the ratio DrvParse gives from runs seconds apart,
// without the machine's drift between them.
func drvParsePairedCases(c DrvCorpus) []Case {
	c = c.GoNixSubset()
	return []Case{
		{c.Name + "/shared", func(b *testing.B) { DrvParsePaired(b, c, false) }},
		{c.Name + "/recycle", func(b *testing.B) { DrvParsePaired(b, c, true) }},
	}
}

func drvWriteCases(c DrvCorpus) []Case {
	return []Case{{c.Name, func(b *testing.B) { DrvWrite(b, c) }}}
}

// drvPathsCases compute every .drv and output path of a store corpus
// (one read from a store, whose paths are known).
func drvPathsCases(c DrvCorpus) []Case {
	if c.Root == "" {
		return nil
	}
	return []Case{{c.Name, func(b *testing.B) { DrvPaths(b, c) }}}
}
