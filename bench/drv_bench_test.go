package bench

import "testing"

// drvCorpora are the parse workloads: the fixtures, large escaped scripts,
// and (with Nix installed) the generated 3,500-derivation closure.
func drvCorpora(b *testing.B) []DrvCorpus {
	cs := []DrvCorpus{FixtureDrvs(b), ScriptDrvs(b)}
	if g := GraphCorpus(b, 3500); g != nil {
		cs = append(cs, ReadDrvCorpus(b, "graph-3500", g.Dir))
	}
	return cs
}

// BenchmarkDrvParse compares nbuild's parser (plain, and reused with an
// interner) with go-nix's ReadDerivation on the same bytes: the files of
// each corpus that go-nix accepts.
func BenchmarkDrvParse(b *testing.B) {
	for _, c := range drvCorpora(b) {
		c := c.GoNixSubset()
		b.Run(c.Name+"/nbuild", func(b *testing.B) { DrvParse(b, c) })
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
