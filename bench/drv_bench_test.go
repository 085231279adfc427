package bench

import "testing"

// The drv workloads (see Workloads) run over the fixtures, large escaped
// scripts and, with Nix installed or the corpus cached, the generated
// 3,500-derivation closure.

func BenchmarkDrvParse(b *testing.B)       { runWorkload(b, "DrvParse") }
func BenchmarkDrvParsePaired(b *testing.B) { runWorkload(b, "DrvParsePaired") }
func BenchmarkDrvWrite(b *testing.B)       { runWorkload(b, "DrvWrite") }
func BenchmarkDrvPaths(b *testing.B)       { runWorkload(b, "DrvPaths") }
