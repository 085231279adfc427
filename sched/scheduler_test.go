package sched

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

var (
	x86 = MustPlatform("x86_64-linux")
	arm = MustPlatform("aarch64-linux")
)

func sec(n float64) time.Duration { return time.Duration(n * float64(time.Second)) }

func durationsOf(jobs []Job) []time.Duration {
	d := make([]time.Duration, len(jobs))
	for i, j := range jobs {
		d[i] = j.Expected
	}
	return d
}

func TestNewPlanRefusesWithAllReasons(t *testing.T) {
	machines := []Machine{
		{URI: "daemon", Local: true, Systems: []string{"x86_64-linux"}, MaxJobs: 2, SpeedFactor: 1},
		{URI: "ssh://big", Systems: []string{"x86_64-linux"}, MaxJobs: 2, SpeedFactor: 1, MandatoryFeatures: []string{"big-parallel"}},
	}
	jobs := []Job{
		{Name: "ok", Platform: x86},
		{Name: "riscv", Platform: MustPlatform("riscv64-linux")},
		{Name: "vm", Platform: MustPlatform("x86_64-linux", "kvm"), Deps: []int{0}},
	}
	_, err := NewPlan(jobs, machines)
	var ue *UnbuildableError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUnbuildable) {
		t.Fatalf("got %v", err)
	}
	want := "2 derivation(s) cannot be built on any builder:\n" +
		"  riscv: no builder for system riscv64-linux\n" +
		"  vm: builder local lacks feature kvm; builder ssh://big lacks feature kvm"
	if err.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", err, want)
	}
	for _, bad := range [][]Job{
		{{Name: "a", Platform: x86, Deps: []int{1}}},
		{{Name: "a", Platform: x86, Deps: []int{0}}},
		{{Name: "a", Platform: x86, Deps: []int{1}}, {Name: "b", Platform: x86, Deps: []int{0}}},
		{{Name: "a"}},
	} {
		if _, err := NewPlan(bad, machines); !errors.Is(err, ErrBadGraph) {
			t.Errorf("NewPlan(%v): got %v, want ErrBadGraph", bad, err)
		}
	}
}

// mixedMachines: a local x86 machine, a fast x86 builder with kvm, an arm
// builder, and a big-parallel-only builder.
func mixedMachines() []Machine {
	return []Machine{
		{URI: "daemon", Local: true, Systems: []string{"x86_64-linux"}, MaxJobs: 2, SpeedFactor: 1, SupportedFeatures: []string{"benchmark"}},
		{URI: "ssh://fast", Systems: []string{"x86_64-linux", "i686-linux"}, MaxJobs: 4, SpeedFactor: 2, SupportedFeatures: []string{"kvm"}},
		{URI: "ssh://arm", Systems: []string{"aarch64-linux"}, MaxJobs: 2, SpeedFactor: 1},
		{URI: "ssh://big", Systems: []string{"x86_64-linux"}, MaxJobs: 8, SpeedFactor: 4, MandatoryFeatures: []string{"big-parallel"}},
	}
}

// randomJobs makes a seeded random DAG over mixedMachines' platforms.
func randomJobs(n int, seed uint64) []Job {
	r := rand.New(rand.NewPCG(seed, 1))
	platforms := []Platform{x86, x86, x86, arm, MustPlatform("x86_64-linux", "kvm"),
		MustPlatform("x86_64-linux", "big-parallel"), MustPlatform("builtin"), MustPlatform("i686-linux")}
	jobs := make([]Job, n)
	for i := range jobs {
		jobs[i] = Job{Name: "job", Platform: platforms[r.IntN(len(platforms))], Expected: sec(1 + r.Float64()*100),
			OutputBytes: int64(r.IntN(50e6)), InputBytes: int64(r.IntN(1e6)), PreferLocal: r.IntN(10) == 0}
		for k := 0; k < 3 && i > 0; k++ {
			if r.IntN(2) == 0 {
				jobs[i].Deps = append(jobs[i].Deps, r.IntN(i))
			}
		}
	}
	return jobs
}

func TestSimulateRespectsMatching(t *testing.T) {
	machines := mixedMachines()
	jobs := randomJobs(400, 7)
	for _, policy := range []Policy{PolicyCriticalPath, PolicyNix} {
		t.Run(policy.String(), func(t *testing.T) {
			tl, err := Simulate(jobs, machines, durationsOf(jobs), SimOptions{Options: Options{Policy: policy}})
			if err != nil {
				t.Fatal(err)
			}
			built := map[int]bool{}
			end := map[int]time.Duration{}
			for _, e := range tl.Entries {
				j := jobs[e.Job]
				m := &machines[e.Machine]
				if !CanBuild(m, j.Platform) {
					t.Errorf("%s %s given to %s", j.Name, j.Platform, m.Name())
				}
				if m.URI == "ssh://big" && !j.Platform.HasFeature("big-parallel") {
					t.Errorf("job without big-parallel on the big-parallel-only builder")
				}
				if j.Platform.HasFeature("kvm") && m.URI != "ssh://fast" {
					t.Errorf("kvm job on %s", m.Name())
				}
				if j.PreferLocal && CanBuild(&machines[0], j.Platform) && !m.Local {
					t.Errorf("preferLocalBuild job %d built on %s", e.Job, m.Name())
				}
				for _, d := range j.Deps {
					if !built[d] || end[d] > e.Start {
						t.Errorf("job %d started before its dependency %d finished", e.Job, d)
					}
				}
				built[e.Job] = true
				end[e.Job] = e.End
			}
			if len(built) != len(jobs) {
				t.Errorf("%d of %d jobs built", len(built), len(jobs))
			}
			if tl.Makespan < tl.LowerBound {
				t.Errorf("makespan %v below the lower bound %v", tl.Makespan, tl.LowerBound)
			}
			// No two builds overlap on a slot (entries are in end order).
			type slot struct{ m, s int }
			var spans = map[slot][][2]time.Duration{}
			for _, e := range tl.Entries {
				k := slot{e.Machine, e.Slot}
				for _, sp := range spans[k] {
					if e.Start < sp[1] && sp[0] < e.End {
						t.Errorf("overlap on %v: %v and %v-%v", k, sp, e.Start, e.End)
					}
				}
				spans[k] = append(spans[k], [2]time.Duration{e.Start, e.End})
			}
		})
	}
}

func TestCriticalPathFirst(t *testing.T) {
	// One slot. "short" is discovered first, but chain-a heads a longer
	// chain: the critical path starts chain-a, Nix's policy starts short.
	machines := []Machine{{URI: "ssh://one", Systems: []string{"x86_64-linux"}, MaxJobs: 1, SpeedFactor: 1}}
	jobs := []Job{
		{Name: "short", Platform: x86, Expected: sec(10)},
		{Name: "chain-a", Platform: x86, Expected: sec(10)},
		{Name: "chain-b", Platform: x86, Expected: sec(10), Deps: []int{1}},
	}
	tl, err := Simulate(jobs, machines, durationsOf(jobs), SimOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tl.Entries[0].Name != "chain-a" {
		t.Errorf("first build %s, want chain-a (longest remaining path)", tl.Entries[0].Name)
	}
	tl, _ = Simulate(jobs, machines, durationsOf(jobs), SimOptions{Options: Options{Policy: PolicyNix}})
	if tl.Entries[0].Name != "short" {
		t.Errorf("nix policy first build %s, want short (discovery order)", tl.Entries[0].Name)
	}
}

func TestEarliestFinishWaitsForFastMachine(t *testing.T) {
	// A 100 s job and a 10 s job, a speed-10 machine with one slot and a
	// speed-1 machine: the big job goes to the fast one (10 s), the small
	// one to the slow one (10 s) rather than queue behind the big one.
	machines := []Machine{
		{URI: "ssh://slow", Systems: []string{"x86_64-linux"}, MaxJobs: 1, SpeedFactor: 1},
		{URI: "ssh://fast", Systems: []string{"x86_64-linux"}, MaxJobs: 1, SpeedFactor: 10},
	}
	jobs := []Job{{Name: "big", Platform: x86, Expected: sec(100)}, {Name: "small", Platform: x86, Expected: sec(10)}}
	tl, err := Simulate(jobs, machines, durationsOf(jobs), SimOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tl.Makespan != sec(10) {
		t.Errorf("makespan %v, want 10s; %+v", tl.Makespan, tl.Entries)
	}
	// Three 100 s jobs: the third should wait for the fast machine (done
	// at 20 s) rather than take 100 s on the slow one.
	jobs = []Job{{Name: "a", Platform: x86, Expected: sec(100)}, {Name: "b", Platform: x86, Expected: sec(100)}, {Name: "c", Platform: x86, Expected: sec(100)}}
	tl, err = Simulate(jobs, machines, durationsOf(jobs), SimOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tl.Makespan != sec(30) {
		t.Errorf("makespan %v, want 30s; %+v", tl.Makespan, tl.Entries)
	}
}

func TestTransferCostCounts(t *testing.T) {
	// Job 1 depends on job 0's 1 GB output. Built on the local machine,
	// its consumer should stay local rather than pay 80 s of copying to a
	// remote twice as fast.
	machines := []Machine{
		{URI: "daemon", Local: true, Systems: []string{"x86_64-linux"}, MaxJobs: 1, SpeedFactor: 1},
		{URI: "ssh://remote", Systems: []string{"x86_64-linux"}, MaxJobs: 1, SpeedFactor: 2},
	}
	jobs := []Job{
		{Name: "producer", Platform: x86, Expected: sec(10), OutputBytes: 1e9, PreferLocal: true},
		{Name: "consumer", Platform: x86, Expected: sec(10), Deps: []int{0}},
	}
	tl, err := Simulate(jobs, machines, durationsOf(jobs), SimOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if e := tl.Entries[1]; e.Name != "consumer" || e.Machine != 0 || tl.Makespan != sec(20) {
		t.Errorf("consumer on machine %d, makespan %v", e.Machine, tl.Makespan)
	}
}

func TestKeepGoing(t *testing.T) {
	machines := []Machine{{URI: "ssh://one", Systems: []string{"x86_64-linux"}, MaxJobs: 1, SpeedFactor: 1}}
	// 0 fails; 1 depends on 0; 2 depends on 1; 3 is independent; 4 on 3.
	jobs := []Job{
		{Name: "broken", Platform: x86, Expected: sec(50)},
		{Name: "needs-broken", Platform: x86, Expected: sec(1), Deps: []int{0}},
		{Name: "needs-needs", Platform: x86, Expected: sec(1), Deps: []int{1}},
		{Name: "fine", Platform: x86, Expected: sec(1)},
		{Name: "needs-fine", Platform: x86, Expected: sec(1), Deps: []int{3}},
	}
	fail := func(j int) bool { return j == 0 }
	plan, err := NewPlan(jobs, machines)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := SimulatePlan(plan, durationsOf(jobs), SimOptions{Options: Options{KeepGoing: true}, Fail: fail})
	if !errors.Is(err, ErrBuildFailed) || !strings.Contains(err.Error(), "broken (on ssh://one: build failed); 2 dependent(s) skipped, 0 not started") {
		t.Errorf("keep-going error: %v", err)
	}
	var names []string
	for _, e := range tl.Entries {
		names = append(names, e.Name+":"+e.Outcome)
	}
	if got := strings.Join(names, " "); got != "broken:failed fine:built needs-fine:built" {
		t.Errorf("keep-going ran %s", got)
	}
	// Without keep-going nothing starts after the failure.
	tl, err = SimulatePlan(plan, durationsOf(jobs), SimOptions{Fail: fail})
	if !errors.Is(err, ErrBuildFailed) || len(tl.Entries) != 1 {
		t.Errorf("without keep-going: %v, %d entries", err, len(tl.Entries))
	}
}

func TestMachineDownReschedules(t *testing.T) {
	machines := []Machine{
		{URI: "ssh://a", Systems: []string{"x86_64-linux"}, MaxJobs: 2, SpeedFactor: 2},
		{URI: "ssh://b", Systems: []string{"x86_64-linux"}, MaxJobs: 2, SpeedFactor: 1},
		{URI: "ssh://arm", Systems: []string{"aarch64-linux"}, MaxJobs: 1, SpeedFactor: 1},
	}
	var jobs []Job
	for i := 0; i < 8; i++ {
		jobs = append(jobs, Job{Name: "x", Platform: x86, Expected: sec(100)})
	}
	jobs = append(jobs, Job{Name: "only-arm", Platform: arm, Expected: sec(100)})
	opts := SimOptions{Options: Options{Backoff: sec(1000)}, Outages: []Outage{{Machine: 0, At: sec(10)}, {Machine: 2, At: sec(20)}}}
	tl, err := Simulate(jobs, machines, durationsOf(jobs), opts)
	if err != nil {
		t.Fatal(err)
	}
	lost, builtOn := 0, map[int]int{}
	for _, e := range tl.Entries {
		switch e.Outcome {
		case "machine-lost":
			lost++
			if e.End != sec(10) && e.End != sec(20) {
				t.Errorf("lost entry ends at %v", e.End)
			}
		case "built":
			builtOn[e.Machine]++
			if e.Machine == 0 && e.Start < sec(1010) {
				t.Errorf("built on machine a at %v, while it was down", e.Start)
			}
		}
	}
	if lost != 3 {
		t.Errorf("%d lost builds, want 3", lost)
	}
	// The arm job waits for its only builder to come back.
	if builtOn[2] != 1 {
		t.Errorf("arm builds: %d", builtOn[2])
	}
	// A machine that keeps failing is dropped and its orphans fail.
	opts = SimOptions{Options: Options{Backoff: sec(1), MaxMachineFailures: 2},
		Outages: []Outage{{Machine: 2, At: sec(1)}, {Machine: 2, At: sec(5)}}}
	jobs = []Job{{Name: "only-arm", Platform: arm, Expected: sec(100)}}
	_, err = Simulate(jobs, machines, durationsOf(jobs), opts)
	if !errors.Is(err, ErrBuildFailed) || !strings.Contains(err.Error(), "every builder that can build it is down") {
		t.Errorf("dropped machine: %v", err)
	}
}

func TestNixPolicyChoice(t *testing.T) {
	// 2.8: least load/speedFactor with integer division, ties to the
	// faster machine, then the lower load, then file order; remote before
	// local.
	machines := []Machine{
		{URI: "daemon", Local: true, Systems: []string{"x86_64-linux"}, MaxJobs: 4, SpeedFactor: 1},
		{URI: "ssh://a", Systems: []string{"x86_64-linux"}, MaxJobs: 3, SpeedFactor: 1},
		{URI: "ssh://b", Systems: []string{"x86_64-linux"}, MaxJobs: 3, SpeedFactor: 3},
	}
	var jobs []Job
	for i := 0; i < 10; i++ {
		jobs = append(jobs, Job{Name: "x", Platform: x86, Expected: sec(100)})
	}
	plan, _ := NewPlan(jobs, machines)
	s := NewScheduler(plan, Options{Policy: PolicyNix})
	var got []string
	for _, a := range s.Assign(time.Unix(0, 0)) {
		got = append(got, machines[a.Machine].Name())
	}
	// b (0/3=0, faster), b (1/3=0), b (2/3=0), then a, a, a, then local.
	want := "ssh://b ssh://b ssh://b ssh://a ssh://a ssh://a local local local local"
	if strings.Join(got, " ") != want {
		t.Errorf("got  %s\nwant %s", strings.Join(got, " "), want)
	}
}

func TestTimelineOutputs(t *testing.T) {
	jobs := randomJobs(60, 3)
	tl, err := Simulate(jobs, mixedMachines(), durationsOf(jobs), SimOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tl.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		Policy   string  `json:"policy"`
		Makespan float64 `json:"makespan"`
		Entries  []struct {
			Job        int
			Start, End float64
			System     string
		} `json:"entries"`
	}
	if err := json.Unmarshal(buf.Bytes(), &decoded); err != nil {
		t.Fatal(err)
	}
	if decoded.Policy != "nbuild" || len(decoded.Entries) != 60 || decoded.Makespan != tl.Makespan.Seconds() {
		t.Errorf("JSON: %+v", decoded)
	}
	buf.Reset()
	if err := tl.WriteSVG(&buf); err != nil {
		t.Fatal(err)
	}
	// Well-formed XML with an svg root, a bar per entry and a legend.
	dec := xml.NewDecoder(bytes.NewReader(buf.Bytes()))
	rects := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte(`<svg xmlns="http://www.w3.org/2000/svg"`)) || rects < 60 ||
		!bytes.Contains(buf.Bytes(), []byte(">aarch64-linux</text>")) {
		t.Errorf("SVG: %d rects\n%.300s", rects, buf.String())
	}
}

// fakeExecutor "builds" by sleeping (virtual time under synctest): job
// durations at speed 1, divided by the machine's speed. Machines listed in
// flaky fail to connect on their first attempt.
type fakeExecutor struct {
	plan  *Plan
	flaky map[int]bool
	fail  map[int]bool
	mu    sync.Mutex
	tried map[int]bool
}

func (f *fakeExecutor) Start(ctx context.Context, a Assignment, results chan<- Result) {
	go func() {
		f.mu.Lock()
		first := !f.tried[a.Machine]
		f.tried[a.Machine] = true
		f.mu.Unlock()
		if f.flaky[a.Machine] && first {
			time.Sleep(time.Second)
			results <- Result{Assignment: a, Outcome: MachineLost, Reason: "connection refused"}
			return
		}
		d := f.plan.Jobs[a.Job].Expected / time.Duration(f.plan.Machines[a.Machine].SpeedFactor)
		select {
		case <-time.After(d):
			o := Built
			if f.fail[a.Job] {
				o = Failed
			}
			results <- Result{Assignment: a, Outcome: o, Reason: "exit 1"}
		case <-ctx.Done():
			results <- Result{Assignment: a, Outcome: Failed, Reason: "cancelled"}
		}
	}()
}

func TestRunWithExecutor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		machines := []Machine{
			{URI: "ssh://flaky", Systems: []string{"x86_64-linux"}, MaxJobs: 2, SpeedFactor: 4},
			{URI: "ssh://steady", Systems: []string{"x86_64-linux"}, MaxJobs: 2, SpeedFactor: 1},
		}
		jobs := []Job{
			{Name: "a", Platform: x86, Expected: sec(40)},
			{Name: "b", Platform: x86, Expected: sec(40)},
			{Name: "c", Platform: x86, Expected: sec(40), Deps: []int{0, 1}},
		}
		plan, err := NewPlan(jobs, machines)
		if err != nil {
			t.Fatal(err)
		}
		s := NewScheduler(plan, Options{Backoff: sec(5)})
		tl := NewTimeline(plan)
		exec := &fakeExecutor{plan: plan, flaky: map[int]bool{0: true}, tried: map[int]bool{}}
		start := time.Now()
		if err := s.Run(context.Background(), exec, RunOptions{Timeline: tl}); err != nil {
			t.Fatal(err)
		}
		// t=0: a and b start on flaky (speed 4); the first connection
		// fails at t=1: that job is lost and flaky is down until t=6,
		// while the other build there goes on (built at t=10). The lost
		// job waits for flaky (6+10 = 16 beats 1+40 on steady); c starts
		// on flaky at 16 and is built at 26.
		if got := time.Since(start); got != sec(26) {
			t.Errorf("run took %v, want 26s; timeline %+v", got, tl.Entries)
		}
		lost := 0
		for _, e := range tl.Entries {
			if e.Outcome == "machine-lost" {
				lost++
			}
		}
		if lost != 1 || len(tl.Entries) != 4 {
			t.Errorf("timeline %+v", tl.Entries)
		}
	})
}

func TestRunStopsAfterFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		machines := []Machine{{URI: "ssh://m", Systems: []string{"x86_64-linux"}, MaxJobs: 2, SpeedFactor: 1}}
		jobs := []Job{
			{Name: "fails-fast", Platform: x86, Expected: sec(10)},
			{Name: "long", Platform: x86, Expected: sec(100)},
			{Name: "after", Platform: x86, Expected: sec(1), Deps: []int{1}},
		}
		plan, _ := NewPlan(jobs, machines)
		s := NewScheduler(plan, Options{})
		exec := &fakeExecutor{plan: plan, fail: map[int]bool{0: true}, tried: map[int]bool{}}
		start := time.Now()
		err := s.Run(context.Background(), exec, RunOptions{})
		if !errors.Is(err, ErrBuildFailed) || !strings.Contains(err.Error(), "fails-fast (on ssh://m: exit 1)") {
			t.Errorf("got %v", err)
		}
		// The long build is cancelled at t=10 rather than awaited.
		if got := time.Since(start); got != sec(10) {
			t.Errorf("run took %v", got)
		}
		if s.State(2) != Waiting || s.State(1) != Ready {
			t.Errorf("states: cancelled %v, dependent %v", s.State(1), s.State(2))
		}
		if !strings.HasSuffix(err.Error(), "0 dependent(s) skipped, 2 not started") || strings.Contains(err.Error(), "cancelled") {
			t.Errorf("cancelled build reported as failed: %v", err)
		}
	})
}

func TestRunCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		machines := []Machine{{URI: "ssh://m", Systems: []string{"x86_64-linux"}, MaxJobs: 1, SpeedFactor: 1}}
		jobs := []Job{{Name: "a", Platform: x86, Expected: sec(100)}, {Name: "b", Platform: x86, Expected: sec(100)}}
		plan, _ := NewPlan(jobs, machines)
		ctx, cancel := context.WithTimeout(context.Background(), sec(30))
		defer cancel()
		err := NewScheduler(plan, Options{}).Run(ctx, &fakeExecutor{plan: plan, tried: map[int]bool{}}, RunOptions{})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v", err)
		}
	})
}

// TestSchedulerByHand drives the state machine directly, as an executor
// host would: MachineDown returns the lost assignments, reports about them
// are ignored afterwards, Wake says when the machine is back.
func TestSchedulerByHand(t *testing.T) {
	machines := []Machine{{URI: "ssh://only", Systems: []string{"x86_64-linux"}, MaxJobs: 2, SpeedFactor: 1}}
	jobs := []Job{
		{Name: "a", Platform: x86, Expected: sec(10)},
		{Name: "b", Platform: x86, Expected: sec(20), Deps: []int{0}},
	}
	plan, err := NewPlan(jobs, machines)
	if err != nil {
		t.Fatal(err)
	}
	if plan.CriticalPath() != sec(30) || plan.Rank(0) != sec(30) || plan.Rank(1) != sec(20) {
		t.Fatalf("ranks %v %v, critical path %v", plan.Rank(0), plan.Rank(1), plan.CriticalPath())
	}
	s := NewScheduler(plan, Options{Backoff: sec(60)})
	t0 := time.Unix(1000, 0)
	as := append([]Assignment(nil), s.Assign(t0)...)
	if len(as) != 1 || as[0].Job != 0 || s.State(1) != Waiting {
		t.Fatalf("first assignments %+v", as)
	}
	lost := s.MachineDown(0, t0.Add(sec(5)))
	if len(lost) != 1 || lost[0].Job != 0 || s.State(0) != Ready || s.Running() != 0 {
		t.Fatalf("lost %+v, state %v", lost, s.State(0))
	}
	// The stale report is ignored; nothing starts while the machine is down.
	s.Done(as[0], Built, "", t0.Add(sec(10)))
	if s.State(0) != Ready || len(s.Assign(t0.Add(sec(10)))) != 0 {
		t.Fatal("stale report accepted or machine used while down")
	}
	wake, ok := s.Wake(t0.Add(sec(10)))
	if !ok || !wake.Equal(t0.Add(sec(65))) {
		t.Fatalf("wake %v %v", wake, ok)
	}
	as = append(as[:0], s.Assign(wake)...)
	if len(as) != 1 || as[0].Attempt != 2 {
		t.Fatalf("after wake %+v", as)
	}
	s.Done(as[0], Built, "", wake.Add(sec(10)))
	if done, rem := s.Progress(); done != 1 || rem != sec(20) {
		t.Errorf("progress %d %v", done, rem)
	}
	as = append(as[:0], s.Assign(wake.Add(sec(10)))...)
	s.Done(as[0], Built, "", wake.Add(sec(30)))
	if !s.Finished() || s.Err() != nil {
		t.Errorf("finished %v err %v", s.Finished(), s.Err())
	}
	// Reports with nonsense fields are ignored, not a panic.
	s.Done(Assignment{Job: 99, Machine: -1, Slot: 7}, Built, "", wake)
}

func TestEdgeCases(t *testing.T) {
	// No jobs: finished at once.
	tl, err := Simulate(nil, mixedMachines(), nil, SimOptions{})
	if err != nil || tl.Makespan != 0 || len(tl.Entries) != 0 {
		t.Errorf("empty plan: %v %+v", err, tl)
	}
	// No machines: every job refused.
	_, err = NewPlan([]Job{{Name: "a", Platform: x86}}, nil)
	if !errors.Is(err, ErrUnbuildable) || !strings.Contains(err.Error(), "a: no builders") {
		t.Errorf("no machines: %v", err)
	}
	// max-jobs = 0 on the local machine: preferLocalBuild jobs go remote
	// (Nix 2.8 would build them locally anyway, issue #3810).
	machines := []Machine{
		{URI: "daemon", Local: true, Systems: []string{"x86_64-linux"}, MaxJobs: 0, SpeedFactor: 1},
		{URI: "ssh://r", Systems: []string{"x86_64-linux"}, MaxJobs: 1, SpeedFactor: 1},
	}
	jobs := []Job{{Name: "p", Platform: x86, PreferLocal: true, Expected: sec(1)}}
	tl, err = Simulate(jobs, machines, durationsOf(jobs), SimOptions{})
	if err != nil || tl.Entries[0].Machine != 1 {
		t.Errorf("max-jobs 0: %v %+v", err, tl)
	}
	// Durations must match jobs.
	if _, err := Simulate(jobs, machines, nil, SimOptions{}); err == nil {
		t.Error("missing durations accepted")
	}
}

func TestProgressMatchesFullScan(t *testing.T) {
	jobs := randomJobs(300, 11)
	machines := mixedMachines()
	for _, policy := range []Policy{PolicyCriticalPath, PolicyNix} {
		plan, err := NewPlan(jobs, machines)
		if err != nil {
			t.Fatal(err)
		}
		s := NewScheduler(plan, Options{Policy: policy})
		now := time.Unix(0, 0)
		var running []Assignment
		for !s.Finished() {
			running = append(running, s.Assign(now)...)
			_, got := s.Progress()
			var want time.Duration
			for id := range jobs {
				if st := s.State(id); st == Waiting || st == Ready || st == Running {
					want = max(want, plan.Rank(id))
				}
			}
			if got != want {
				t.Fatalf("%v: Progress remaining %v, full scan %v", policy, got, want)
			}
			a := running[0]
			running = running[1:]
			now = now.Add(time.Second)
			s.Done(a, Built, "", now)
		}
	}
}

// TestRedoLostOutputs: a consumer finds that the only machine holding its
// input's outputs is gone; the producer is built again, then the consumer,
// and the run finishes with both built once more.
func TestRedoLostOutputs(t *testing.T) {
	machines := []Machine{
		{URI: "ssh://a", Systems: []string{"x86_64-linux"}, MaxJobs: 1, SpeedFactor: 1},
		{URI: "ssh://b", Systems: []string{"x86_64-linux"}, MaxJobs: 1, SpeedFactor: 1},
	}
	jobs := []Job{
		{Name: "lib", Platform: x86, Expected: sec(10)},
		{Name: "app", Platform: x86, Expected: sec(10), Deps: []int{0}},
		{Name: "tool", Platform: x86, Expected: sec(10), Deps: []int{0}},
	}
	plan, err := NewPlan(jobs, machines)
	if err != nil {
		t.Fatal(err)
	}
	s := NewScheduler(plan, Options{})
	now := time.Unix(1000, 0)
	as := append([]Assignment(nil), s.Assign(now)...)
	if len(as) != 1 || as[0].Job != 0 {
		t.Fatalf("first assignments %+v", as)
	}
	s.Done(as[0], Built, "", now.Add(sec(10)))
	as = append(as[:0], s.Assign(now.Add(sec(10)))...)
	if len(as) != 2 {
		t.Fatalf("dependents not started: %+v", as)
	}
	// "app" finds lib's outputs gone; "tool" already has them and runs on.
	app, tool := as[0], as[1]
	if app.Job != 1 {
		app, tool = tool, app
	}
	s.Redo([]int{0})
	s.Done(app, InputsLost, "lib's builder is gone", now.Add(sec(11)))
	if s.State(0) != Ready || s.State(1) != Waiting || s.State(2) != Running {
		t.Fatalf("states after redo: %v %v %v", s.State(0), s.State(1), s.State(2))
	}
	if done, _ := s.Progress(); done != 0 {
		t.Errorf("finished count %d after redo, want 0", done)
	}
	as = append(as[:0], s.Assign(now.Add(sec(11)))...)
	if len(as) != 1 || as[0].Job != 0 {
		t.Fatalf("lib not rebuilt: %+v", as)
	}
	s.Done(as[0], Built, "", now.Add(sec(21)))
	s.Done(tool, Built, "", now.Add(sec(21)))
	as = append(as[:0], s.Assign(now.Add(sec(21)))...)
	if len(as) != 1 || as[0].Job != 1 {
		t.Fatalf("app not restarted: %+v", as)
	}
	s.Done(as[0], Built, "", now.Add(sec(31)))
	if !s.Finished() || s.Err() != nil {
		t.Errorf("finished %v err %v", s.Finished(), s.Err())
	}
	if done, _ := s.Progress(); done != 3 {
		t.Errorf("finished count %d, want 3", done)
	}
	// Redo of a job that is not built is ignored.
	s.Redo([]int{-1, 99})
}

// TestRedoBounded: inputs that are lost every time end the consumer after
// maxRedos rebuilds instead of looping.
func TestRedoBounded(t *testing.T) {
	machines := []Machine{{URI: "ssh://a", Systems: []string{"x86_64-linux"}, MaxJobs: 1, SpeedFactor: 1}}
	jobs := []Job{
		{Name: "lib", Platform: x86, Expected: sec(10)},
		{Name: "app", Platform: x86, Expected: sec(10), Deps: []int{0}},
	}
	plan, err := NewPlan(jobs, machines)
	if err != nil {
		t.Fatal(err)
	}
	s := NewScheduler(plan, Options{})
	now := time.Unix(1000, 0)
	for i := 0; i < 10 && !s.Finished(); i++ {
		as := append([]Assignment(nil), s.Assign(now)...)
		if len(as) != 1 {
			t.Fatalf("round %d: assignments %+v", i, as)
		}
		if as[0].Job == 0 {
			s.Done(as[0], Built, "", now)
		} else {
			s.Redo([]int{0})
			s.Done(as[0], InputsLost, "gone again", now)
		}
	}
	if !s.Finished() || s.Err() == nil || !strings.Contains(s.Err().Error(), "inputs lost 3 times") {
		t.Fatalf("finished %v, err %v", s.Finished(), s.Err())
	}
}

// TestMachineRefused: a machine that refuses (an untrusted user) leaves
// the run; its job goes to the other machine, and a job only it could
// build fails with its reason.
func TestMachineRefused(t *testing.T) {
	machines := []Machine{
		{URI: "ssh://strict", Systems: []string{"x86_64-linux", "aarch64-linux"}, MaxJobs: 1, SpeedFactor: 8},
		{URI: "ssh://other", Systems: []string{"x86_64-linux"}, MaxJobs: 1, SpeedFactor: 1},
	}
	run := func(jobs []Job) *Scheduler {
		plan, err := NewPlan(jobs, machines)
		if err != nil {
			t.Fatal(err)
		}
		s := NewScheduler(plan, Options{KeepGoing: true})
		now := time.Unix(1000, 0)
		as := append([]Assignment(nil), s.Assign(now)...)
		if len(as) != 1 || as[0].Machine != 0 {
			t.Fatalf("first assignment %+v, want the fast machine", as)
		}
		s.Done(as[0], MachineRefused, "user root is not trusted there", now)
		for i := 0; i < 5 && !s.Finished(); i++ {
			for _, a := range append([]Assignment(nil), s.Assign(now)...) {
				if a.Machine == 0 {
					t.Fatalf("the refusing machine got %+v", a)
				}
				s.Done(a, Built, "", now)
			}
		}
		if !s.Finished() {
			t.Fatal("run did not finish")
		}
		return s
	}
	s := run([]Job{{Name: "x", Platform: x86, Expected: sec(100)}})
	if s.State(0) != Done || s.Err() != nil {
		t.Errorf("x is %v, err %v; want built elsewhere", s.State(0), s.Err())
	}
	s = run([]Job{{Name: "y", Platform: arm, Expected: sec(10)}})
	if err := s.Err(); s.State(0) != Failing || err == nil || !strings.Contains(err.Error(), "user root is not trusted there") {
		t.Errorf("y is %v, err %v; want failing with the refusal", s.State(0), err)
	}
}
