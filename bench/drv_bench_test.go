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

// BenchmarkDrvParsePaired reports nbuild's parse speed as a multiple of
// go-nix's, from passes of both alternating in one process (see
// DrvParsePaired): the ratio BenchmarkDrvParse gives from runs seconds
// apart, without the machine's drift between them.
func BenchmarkDrvParsePaired(b *testing.B) {
	for _, c := range drvCorpora(b) {
		c := c.GoNixSubset()
		b.Run(c.Name+"/shared", func(b *testing.B) { DrvParsePaired(b, c, false) })
		b.Run(c.Name+"/recycle", func(b *testing.B) { DrvParsePaired(b, c, true) })
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
