package executor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
)

func TestUntrusted(t *testing.T) {
	r := &Remote{Machine: sched.Machine{URI: "ssh-ng://alice@pi?remote-store=daemon"}}
	for _, tc := range []struct {
		err  error
		want string // "" means not recognised
	}{
		{&daemon.Error{Message: "cannot add path '/nix/store/x' because it lacks a valid signature"},
			"builder ssh-ng://alice@pi?remote-store=daemon: user alice is not a trusted user of its nix-daemon (add it to trusted-users in the builder's nix.conf), or sign the paths it is sent"},
		{fmt.Errorf("copying: %w", &daemon.Error{Message: "you are not privileged to build input-addressed derivations"}),
			"user alice is not a trusted user of its nix-daemon (add it to trusted-users in the builder's nix.conf) ("},
		{&daemon.Error{Message: "builder for 'x.drv' failed with exit code 1"}, ""},
		// A lost connection that happens to mention signatures is not the
		// daemon's refusal.
		{errors.New("lacks a valid signature"), ""},
	} {
		got := r.untrusted(tc.err)
		switch {
		case tc.want == "" && got != nil:
			t.Errorf("%v recognised as untrusted: %v", tc.err, got)
		case tc.want != "" && (got == nil || !strings.Contains(got.Error(), tc.want)):
			t.Errorf("%v: got %v, want it to contain %q", tc.err, got, tc.want)
		}
	}
	noUser := &Remote{Machine: sched.Machine{URI: "ssh-ng://pi"}}
	if got := noUser.trustError().Error(); !strings.Contains(got, "user the ssh user is not") {
		t.Errorf("without a user in the URI: %q", got)
	}
}

func TestURIParam(t *testing.T) {
	for _, tc := range []struct{ uri, key, want string }{
		{"ssh-ng://root@h?remote-store=daemon", "remote-store", "daemon"},
		{"ssh-ng://root@h?compress=true&remote-store=local%3Froot%3D%2Fx", "remote-store", "local?root=/x"},
		{"ssh-ng://root@h", "remote-store", ""},
		{"ssh-ng://root@h?%zz", "remote-store", ""},
	} {
		if got := uriParam(tc.uri, tc.key); got != tc.want {
			t.Errorf("uriParam(%q, %q) = %q, want %q", tc.uri, tc.key, got, tc.want)
		}
	}
}

func TestContainsLines(t *testing.T) {
	msg := "failed;\nlast 2 log lines:\n> compiling\n> boom\n"
	if !containsLines(msg, "compiling\nboom") {
		t.Errorf("the daemon's quoted tail not recognised")
	}
	if containsLines(msg, "compiling\nother") {
		t.Errorf("a line missing from the message counted as quoted")
	}
}

func TestHeld(t *testing.T) {
	var none *Held
	p := store.Path{}
	if none.On(1, p) {
		t.Errorf("a nil Held holds something")
	}
	if err := none.Fetch(context.Background(), 0, []store.Path{p}); err != nil {
		t.Errorf("a nil Held fetches: %v", err)
	}
	h := NewHeld()
	r := &Remote{}
	h.record(2, r, 7, []store.Path{p})
	if !h.On(2, p) || h.On(1, p) {
		t.Errorf("recorded on machine 2, On says otherwise")
	}
	// Fetching for the machine that holds the path copies nothing (the
	// zero Remote would fail if it were asked to).
	if err := h.Fetch(context.Background(), 2, []store.Path{p}); err != nil {
		t.Errorf("fetch for the holder: %v", err)
	}
	// For another machine the holder must hand it over; the zero Remote
	// cannot (no builder URI), as a dead builder could not: the job that
	// built it is named for a rebuild and the record is dropped.
	r.LocalSocket = filepath.Join(t.TempDir(), "no-daemon")
	err := h.Fetch(context.Background(), 1, []store.Path{p})
	var lost *LostError
	if !errors.As(err, &lost) || len(lost.Jobs) != 1 || lost.Jobs[0] != 7 {
		t.Fatalf("fetch from an unreachable holder: %v", err)
	}
	if h.On(2, p) {
		t.Errorf("a lost output is still recorded on its holder")
	}
	res := inputsResult(sched.Assignment{Job: 3}, p, err)
	if res.Outcome != sched.InputsLost || len(res.Redo) != 1 || res.Redo[0] != 7 {
		t.Errorf("result %+v", res)
	}
	if res := inputsResult(sched.Assignment{Job: 3}, p, errors.New("other")); res.Outcome != sched.Failed {
		t.Errorf("a plain error gave %v", res.Outcome)
	}
}
