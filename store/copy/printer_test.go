package copy

import (
	"testing"
	"time"
)

// TestCopyStatus checks the progress line: no rate and no ETA until a
// rate has been measured for a while from the first byte, whatever came
// before it (the ssh login, the closure query).
func TestCopyStatus(t *testing.T) {
	const mib = 1 << 20
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var m rateMeter
	total := Progress{TotalPaths: 5, TotalBytes: 445 * mib}
	for _, step := range []struct {
		at    time.Duration
		bytes int64
		want  string
	}{
		{0, 0, "copied 0/5 paths, 0.0/445.0 MiB"},
		// The login took 2 s: the first MiB must not mean 0.5 MiB/s.
		{2 * time.Second, 1 * mib, "copied 0/5 paths, 1.0/445.0 MiB"},
		{2*time.Second + 500*time.Millisecond, 6 * mib, "copied 0/5 paths, 6.0/445.0 MiB"},
		{3 * time.Second, 11 * mib, "copied 0/5 paths, 11.0/445.0 MiB, 10.0 MiB/s, ETA 43s"},
		{4 * time.Second, 21 * mib, "copied 0/5 paths, 21.0/445.0 MiB, 10.0 MiB/s, ETA 42s"},
	} {
		pr := total
		pr.Bytes = step.bytes
		if got := statusLine(pr, m.add(t0.Add(step.at), step.bytes)); got != step.want {
			t.Errorf("at %v: %q, want %q", step.at, got, step.want)
		}
	}
}
