package sched

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// simFiles lists the timelines in dir.
func simFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.sim"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// freshTimeline simulates jobs on machines without a cache.
func freshTimeline(t *testing.T, jobs []Job, machines []Machine, dur []time.Duration, opts SimOptions) *Timeline {
	t.Helper()
	plan, err := NewPlan(jobs, machines)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := SimulatePlan(plan, dur, opts)
	if err != nil {
		t.Fatal(err)
	}
	return tl
}

func TestSimCacheGivesTheSimulation(t *testing.T) {
	jobs, machines := randomJobs(400, 7), mixedMachines()
	dur := durationsOf(jobs)
	want := freshTimeline(t, jobs, machines, dur, SimOptions{})
	c := SimCache{Dir: filepath.Join(t.TempDir(), "sims")} // made on first save
	for i, what := range []string{"miss", "hit"} {
		plan, tl, err := c.Plan(jobs, machines, dur, SimOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(tl, want) {
			t.Fatalf("%s: the timeline differs from a fresh simulation's", what)
		}
		if plan == nil || len(plan.Jobs) != len(jobs) || plan.Capable(0) == nil {
			t.Fatalf("%s: no plan made", what)
		}
		if n := len(simFiles(t, c.Dir)); n != 1 {
			t.Fatalf("after call %d: %d timeline files, want 1", i+1, n)
		}
	}
}

// TestSimCacheReadsTheFile shows a hit comes from the file: a timeline
// planted under the simulation's key is what Plan returns.
func TestSimCacheReadsTheFile(t *testing.T) {
	jobs, machines := randomJobs(50, 3), mixedMachines()
	dur := durationsOf(jobs)
	c := SimCache{Dir: t.TempDir()}
	if _, _, err := c.Plan(jobs, machines, dur, SimOptions{}); err != nil {
		t.Fatal(err)
	}
	files := simFiles(t, c.Dir)
	if len(files) != 1 {
		t.Fatalf("%d timeline files, want 1", len(files))
	}
	planted := freshTimeline(t, jobs, machines, dur, SimOptions{})
	e := &planted.Entries[0]
	e.Start += time.Second
	e.End += 2 * time.Second
	planted.LowerBound = 42 * time.Second
	planted.Makespan = 0
	for _, e := range planted.Entries {
		planted.Makespan = max(planted.Makespan, e.End)
	}
	if err := os.WriteFile(files[0], appendTimeline(nil, planted), 0o644); err != nil {
		t.Fatal(err)
	}
	_, tl, err := c.Plan(jobs, machines, dur, SimOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tl, planted) {
		t.Fatal("the planted timeline was not read")
	}
}

// TestSimCacheKey changes each input of a simulation in turn: each
// change is simulated afresh (a new file) and answered correctly.
func TestSimCacheKey(t *testing.T) {
	base, machines := randomJobs(200, 11), mixedMachines()
	c := SimCache{Dir: t.TempDir()}
	type variant struct {
		name     string
		jobs     []Job
		machines []Machine
		dur      []time.Duration
		opts     SimOptions
	}
	clone := func(jobs []Job) []Job { return append([]Job(nil), jobs...) }
	cloneM := func() []Machine { return append([]Machine(nil), machines...) }
	var vs []variant
	vs = append(vs, variant{name: "base", jobs: base, machines: machines, dur: durationsOf(base)})
	j := clone(base)
	j[5].Expected += time.Second
	vs = append(vs, variant{name: "expected", jobs: j, machines: machines, dur: durationsOf(base)})
	d := durationsOf(base)
	d[9] += time.Minute
	vs = append(vs, variant{name: "durations", jobs: base, machines: machines, dur: d})
	j = clone(base)
	j[150].Deps = append([]int{0}, j[150].Deps...)
	vs = append(vs, variant{name: "deps", jobs: j, machines: machines, dur: durationsOf(base)})
	j = clone(base)
	j[20].OutputBytes++
	vs = append(vs, variant{name: "output bytes", jobs: j, machines: machines, dur: durationsOf(base)})
	j = clone(base)
	j[30].PreferLocal = !j[30].PreferLocal
	vs = append(vs, variant{name: "preferLocal", jobs: j, machines: machines, dur: durationsOf(base)})
	j = clone(base)
	for i := range j {
		if j[i].Platform == x86 {
			j[i].Platform = MustPlatform("i686-linux")
			break
		}
	}
	vs = append(vs, variant{name: "platform", jobs: j, machines: machines, dur: durationsOf(base)})
	m := cloneM()
	m[1].SpeedFactor = 3
	vs = append(vs, variant{name: "speed", jobs: base, machines: m, dur: durationsOf(base)})
	m = cloneM()
	m[3].MaxJobs = 2
	vs = append(vs, variant{name: "slots", jobs: base, machines: m, dur: durationsOf(base)})
	m = cloneM()
	m[2].URI = "ssh://arm2"
	vs = append(vs, variant{name: "uri", jobs: base, machines: m, dur: durationsOf(base)})
	m = cloneM()
	m[0].SupportedFeatures = []string{"benchmark", "kvm"}
	vs = append(vs, variant{name: "features", jobs: base, machines: m, dur: durationsOf(base)})
	vs = append(vs, variant{name: "policy", jobs: base, machines: machines, dur: durationsOf(base), opts: SimOptions{Options: Options{Policy: PolicyNix}}})
	for i, v := range vs {
		_, tl, err := c.Plan(v.jobs, v.machines, v.dur, v.opts)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		if n := len(simFiles(t, c.Dir)); n != i+1 {
			t.Fatalf("%s: %d timeline files, want %d (not simulated afresh)", v.name, n, i+1)
		}
		if want := freshTimeline(t, v.jobs, v.machines, v.dur, v.opts); !reflect.DeepEqual(tl, want) {
			t.Fatalf("%s: the timeline differs from a fresh simulation's", v.name)
		}
	}
	// Simulations that cannot be hashed are not cached.
	for _, opts := range []SimOptions{
		{Fail: func(job int) bool { return job == 3 }},
		{Outages: []Outage{{Machine: 1, At: time.Minute}}},
		{Options: Options{Bandwidth: func(int) float64 { return 1e6 }}},
	} {
		c.Plan(base, machines, durationsOf(base), opts)
		if n := len(simFiles(t, c.Dir)); n != len(vs) {
			t.Fatalf("a simulation with failures, outages or a bandwidth function was cached (%d files)", n)
		}
	}
}

// TestSimCacheBadFiles: a damaged file is ignored and replaced.
func TestSimCacheBadFiles(t *testing.T) {
	jobs, machines := randomJobs(100, 5), mixedMachines()
	dur := durationsOf(jobs)
	want := freshTimeline(t, jobs, machines, dur, SimOptions{})
	good := appendTimeline(nil, want)
	c := SimCache{Dir: t.TempDir()}
	if _, _, err := c.Plan(jobs, machines, dur, SimOptions{}); err != nil {
		t.Fatal(err)
	}
	file := simFiles(t, c.Dir)[0]
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x10
	for name, data := range map[string][]byte{
		"empty": nil, "truncated": good[:len(good)/2], "flipped bit": flipped,
		"other magic": append([]byte("nbuild-sim 9\n"), good[len(simMagic):]...),
	} {
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, tl, err := c.Plan(jobs, machines, dur, SimOptions{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(tl, want) {
			t.Fatalf("%s: the timeline differs from a fresh simulation's", name)
		}
		if got, _ := os.ReadFile(file); !bytes.Equal(got, good) {
			t.Fatalf("%s: the file was not replaced", name)
		}
	}
}

// FuzzDecodeTimeline: a cached timeline is outside bytes; decoding never
// panics, and what decodes round-trips through its encoding.
func FuzzDecodeTimeline(f *testing.F) {
	jobs, machines := randomJobs(30, 2), mixedMachines()
	plan, err := NewPlan(jobs, machines)
	if err != nil {
		f.Fatal(err)
	}
	tl, err := SimulatePlan(plan, durationsOf(jobs), SimOptions{})
	if err != nil {
		f.Fatal(err)
	}
	good := appendTimeline(nil, tl)
	f.Add(good)
	f.Add(good[:len(good)-5])
	f.Add([]byte(simMagic))
	f.Add([]byte("nbuild-sim 1\n\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Add(appendTimeline(nil, &Timeline{Entries: []Entry{{Job: 99, Machine: 0, Outcome: "built"}}}))
	f.Add(appendTimeline(nil, &Timeline{Entries: []Entry{{Job: 1, Machine: 2, Slot: 7, Outcome: "built"}}}))
	f.Add(appendTimeline(nil, &Timeline{Entries: []Entry{{Job: 1, Start: -5, End: 3, Outcome: "built"}}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		tl, err := decodeTimeline(data, plan, PolicyCriticalPath)
		if err != nil {
			return
		}
		again, err := decodeTimeline(appendTimeline(nil, tl), plan, PolicyCriticalPath)
		if err != nil || !reflect.DeepEqual(again, tl) {
			t.Fatalf("decoded timeline does not round-trip: %v", err)
		}
		for _, e := range tl.Entries {
			if e.End < e.Start || e.Name != jobs[e.Job].Name {
				t.Fatalf("bad entry %+v", e)
			}
		}
	})
}
