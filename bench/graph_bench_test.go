package bench

import "testing"

// BenchmarkGraphLoad skips without Nix (fails with CI=true), which
// instantiates the generated closures the first time.
func BenchmarkGraphLoad(b *testing.B) { runWorkload(b, "GraphLoad") }
