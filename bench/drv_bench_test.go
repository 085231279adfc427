package bench

import (
	"os/exec"
	"testing"
)

// drvCorpora are the parse workloads: the fixtures, large escaped scripts,
// and (with Nix installed) the generated 3,500-derivation closure.
func drvCorpora(b *testing.B) []DrvCorpus {
	cs := []DrvCorpus{FixtureDrvs(b), ScriptDrvs(b)}
	// The generated graph needs Nix to instantiate; without it the other
	// corpora still run.
	if _, err := exec.LookPath("nix-instantiate"); err == nil {
		cs = append(cs, ReadDrvCorpus(b, "graph-3500", GraphCorpus(b, 3500).Dir))
	}
	return cs
}

// BenchmarkDrvParse compares nbuild's parser (plain, sharing its input,
// sharing and recycling, and reused with an interner) with go-nix's ReadDerivation on the same bytes: the files of
// each corpus that go-nix accepts.
func BenchmarkDrvParse(b *testing.B) {
	for _, c := range drvCorpora(b) {
		c := c.GoNixSubset()
		b.Run(c.Name+"/nbuild", func(b *testing.B) { DrvParse(b, c) })
		b.Run(c.Name+"/nbuild-shared", func(b *testing.B) { DrvParseShared(b, c) })
		b.Run(c.Name+"/nbuild-recycle", func(b *testing.B) { DrvParseRecycle(b, c) })
		b.Run(c.Name+"/nbuild-intern", func(b *testing.B) { DrvParseIntern(b, c) })
		b.Run(c.Name+"/go-nix", func(b *testing.B) { DrvParseGoNix(b, c) })
	}
}

func BenchmarkDrvWrite(b *testing.B) {
	for _, c := range drvCorpora(b) {
		b.Run(c.Name, func(b *testing.B) { DrvWrite(b, c) })
	}
}

// BenchmarkDrvPaths computes every .drv and output path of a store corpus.
func BenchmarkDrvPaths(b *testing.B) {
	for _, c := range drvCorpora(b) {
		if c.Root == "" {
			continue
		}
		b.Run(c.Name, func(b *testing.B) { DrvPaths(b, c) })
	}
}
