package executor

import (
	"testing"
	"time"

	"github.com/nbuild/nbuild/sched"
)

func TestBuildStatus(t *testing.T) {
	for _, tc := range []struct {
		built, failed, total int
		running              map[string]int
		cp, eta              time.Duration
		want                 string
	}{
		{0, 0, 3, nil, 0, 0, "[0/3 built; critical path ~0s; ETA ~0s]"},
		{1, 2, 3, nil, 0, 0, "[1/3 built, 2 failed; critical path ~0s; ETA ~0s]"},
		{3, 0, 10, map[string]int{"root@pi": 1, "local": 2}, 40 * time.Second, 61400 * time.Millisecond,
			"[3/10 built; running: 2 local, 1 root@pi; critical path ~40s; ETA ~1m1s]"},
	} {
		if got := statusLine(tc.built, tc.failed, tc.total, tc.running, tc.cp, tc.eta); got != tc.want {
			t.Errorf("statusLine = %q, want %q", got, tc.want)
		}
	}
	for uri, want := range map[string]string{
		"ssh-ng://root@host-0":        "root@host-0",
		"ssh://builder?compress=true": "builder",
		"pi.local":                    "pi.local",
	} {
		if got := BuilderName(sched.Machine{URI: uri}); got != want {
			t.Errorf("BuilderName(%q) = %q, want %q", uri, got, want)
		}
	}
	if got := BuilderName(sched.Machine{Local: true, URI: "local"}); got != "local" {
		t.Errorf("local machine shown as %q", got)
	}
}
