package sched

import (
	"strings"
	"time"
)

// Estimator predicts how long a derivation takes to build on a machine of
// speed factor 1.
type Estimator interface {
	Estimate(drvName string, outputBytes int64) time.Duration
}

// PackageName strips the version from a derivation name the way Nix's
// DrvName does [2.8 src/libstore/names.cc DrvName::DrvName]: the name is
// everything before the first '-' that is followed by something other than
// a letter ("apache-httpd-2.0.48" → "apache-httpd", "hello-2.12" →
// "hello", "perl5.36.0-Moo-2.005" → "perl5.36.0-Moo"). A trailing ".drv"
// is removed first.
func PackageName(drvName string) string {
	s := strings.TrimSuffix(drvName, ".drv")
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '-' && !isASCIILetter(s[i+1]) {
			return s[:i]
		}
	}
	return s
}

func isASCIILetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// LearnedEstimator predicts from past builds of the same package (any
// version), then from the output size, then a default.
type LearnedEstimator struct {
	// Lookup returns the recorded duration of an earlier build of the
	// package (a PackageName), e.g. from the metadata cache. May be nil.
	Lookup func(pkg string) (time.Duration, bool)
	// BytesPerSecond converts a known output size to a duration; zero
	// means 2 MB/s of output (a compile-heavy package of 100 MB takes
	// about a minute). Used only when outputBytes > 0.
	BytesPerSecond float64
	// Default is the estimate for an unknown package of unknown size;
	// zero means 30 s.
	Default time.Duration
}

var _ Estimator = LearnedEstimator{}

// Estimate implements Estimator.
func (e LearnedEstimator) Estimate(drvName string, outputBytes int64) time.Duration {
	if e.Lookup != nil {
		if d, ok := e.Lookup(PackageName(drvName)); ok && d > 0 {
			return d
		}
	}
	if outputBytes > 0 {
		rate := e.BytesPerSecond
		if rate <= 0 {
			rate = 2e6
		}
		return max(time.Duration(float64(outputBytes)/rate*float64(time.Second)), time.Second)
	}
	if e.Default > 0 {
		return e.Default
	}
	return 30 * time.Second
}
