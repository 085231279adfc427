package sched

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestMachineUnreachable: a machine that could not be reached leaves the
// run at once (no back-off to wait out). Jobs only it could build fail
// together, the error naming them and the machine once; with KeepGoing
// the job another machine can build is built, without it the run stops.
func TestMachineUnreachable(t *testing.T) {
	machines := []Machine{
		{URI: "ssh-ng://far", Systems: []string{"x86_64-linux", "aarch64-linux"}, MaxJobs: 2, SpeedFactor: 8},
		{URI: "ssh-ng://near", Systems: []string{"x86_64-linux"}, MaxJobs: 1, SpeedFactor: 1},
	}
	jobs := []Job{
		{Name: "arm-a", Platform: arm, Expected: sec(10)},
		{Name: "arm-b", Platform: arm, Expected: sec(10), Deps: []int{0}},
		{Name: "arm-c", Platform: arm, Expected: sec(10)},
		{Name: "x", Platform: x86, Expected: sec(1)},
	}
	plan, err := NewPlan(jobs, machines)
	if err != nil {
		t.Fatal(err)
	}
	for _, keepGoing := range []bool{false, true} {
		s := NewScheduler(plan, Options{KeepGoing: keepGoing, Backoff: time.Hour})
		now := time.Unix(1000, 0)
		var far, near []Assignment
		for _, a := range s.Assign(now) {
			if a.Machine == 0 {
				far = append(far, a)
			} else {
				near = append(near, a)
			}
		}
		if len(far) == 0 {
			t.Fatal("nothing assigned to the far machine")
		}
		s.Done(far[0], MachineUnreachable, "builder ssh-ng://far is unreachable (3 login attempts): Connection refused", now)
		// Its other jobs were waiting for the same login.
		for _, a := range far[1:] {
			s.Done(a, MachineUnreachable, "builder ssh-ng://far is unreachable (3 login attempts): Connection refused", now)
		}
		for _, a := range near {
			s.Done(a, Built, "", now)
		}
		for i := 0; i < 10 && !s.Finished(); i++ {
			for _, a := range append([]Assignment(nil), s.Assign(now)...) {
				if a.Machine == 0 {
					t.Fatalf("the unreachable machine got %+v", a)
				}
				s.Done(a, Built, "", now)
			}
		}
		if !s.Finished() {
			t.Fatalf("keep-going %v: the run did not finish", keepGoing)
		}
		if _, ok := s.Wake(now); ok {
			t.Errorf("keep-going %v: the scheduler waits for a back-off", keepGoing)
		}
		err := s.Err()
		if !errors.Is(err, ErrBuildFailed) || !strings.Contains(err.Error(), "arm-a") ||
			strings.Count(err.Error(), "ssh-ng://far is unreachable") != 1 {
			t.Errorf("keep-going %v: %v", keepGoing, err)
		}
		if keepGoing && (s.State(3) != Done || s.State(1) != Skipped) {
			t.Errorf("x %v, arm-b %v; want built and skipped", s.State(3), s.State(1))
		}
		t.Logf("keep-going %v: %v", keepGoing, err)
	}
}
