package bench

import "testing"

// The NAR workloads read trees of GOROOT.

func BenchmarkNarDumpHash(b *testing.B) { runWorkload(b, "NarDumpHash") }
func BenchmarkNarRead(b *testing.B)     { runWorkload(b, "NarRead") }
func BenchmarkNarCompress(b *testing.B) { runWorkload(b, "NarCompress") }
