package bench

import "testing"

// The daemon workloads skip without a nix-daemon (fail with CI=true).

func BenchmarkDaemonQuery(b *testing.B) { runWorkload(b, "DaemonQuery") }
func BenchmarkDaemonNar(b *testing.B)   { runWorkload(b, "DaemonNar") }
