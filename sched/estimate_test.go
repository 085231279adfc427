package sched

import (
	"testing"
	"time"
)

func TestPackageName(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"apache-httpd-2.0.48", "apache-httpd"},
		{"hello-2.12", "hello"},
		{"hello-2.12.drv", "hello"},
		{"hello", "hello"},
		{"perl5.36.0-Moo-2.005", "perl5.36.0-Moo"},
		{"python3.10-requests-2.28.1", "python3.10-requests"},
		{"linux-6.1.2-modules", "linux"},
		{"nixos-system-host-23.05pre", "nixos-system-host"},
		{"foo-", "foo-"},
		{"foo--1", "foo"},
		{"source", "source"},
		{"x-_y", "x"},
		{"", ""},
	} {
		if got := PackageName(tt.in); got != tt.want {
			t.Errorf("PackageName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLearnedEstimator(t *testing.T) {
	learned := map[string]time.Duration{"gcc": 20 * time.Minute}
	e := LearnedEstimator{Lookup: func(p string) (time.Duration, bool) { d, ok := learned[p]; return d, ok }}
	for _, tt := range []struct {
		name  string
		bytes int64
		want  time.Duration
	}{
		{"gcc-13.2.0", 1e9, 20 * time.Minute},
		{"gcc-12.1.0.drv", 0, 20 * time.Minute},
		{"zlib-1.3", 4e6, 2 * time.Second},
		{"tiny-1", 10, time.Second},
		{"unknown-1.0", 0, 30 * time.Second},
	} {
		if got := e.Estimate(tt.name, tt.bytes); got != tt.want {
			t.Errorf("Estimate(%q, %d) = %v, want %v", tt.name, tt.bytes, got, tt.want)
		}
	}
	if got := (LearnedEstimator{Default: time.Minute}).Estimate("x", 0); got != time.Minute {
		t.Errorf("default: %v", got)
	}
}
