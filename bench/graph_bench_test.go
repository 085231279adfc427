package bench

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/nbuild/nbuild/eval/graph"
)

// BenchmarkGraphLoad loads generated closures of several sizes, with the
// default concurrency and with one worker, beside parsing the same files
// from memory on one goroutine, reading them without parsing on
// GOMAXPROCS goroutines, and loading the closure from a snapshot.
func BenchmarkGraphLoad(b *testing.B) {
	for _, n := range []int{500, 3500, 20000} {
		c := GraphCorpus(b, n)
		b.Run(fmt.Sprintf("drvs=%d", c.Drvs), func(b *testing.B) { GraphLoad(b, c, graph.Options{}) })
		b.Run(fmt.Sprintf("drvs=%d/workers=1", c.Drvs), func(b *testing.B) {
			GraphLoad(b, c, graph.Options{Concurrency: 1})
		})
		b.Run(fmt.Sprintf("drvs=%d/parse-only", c.Drvs), func(b *testing.B) { GraphParseOnly(b, c) })
		b.Run(fmt.Sprintf("drvs=%d/read-only", c.Drvs), func(b *testing.B) {
			GraphReadOnly(b, c, runtime.GOMAXPROCS(0))
		})
		b.Run(fmt.Sprintf("drvs=%d/snapshot", c.Drvs), func(b *testing.B) { GraphLoadSnapshot(b, c) })
	}
}
