package sched

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Policy chooses which ready job starts next and on which machine.
type Policy int

const (
	// PolicyCriticalPath (the default) starts the ready job with the
	// longest remaining critical path first, on the machine where it is
	// expected to finish first: queueing behind running builds, speed
	// factor and the time to copy the inputs the machine lacks all count.
	// A job may wait for a busy fast machine rather than take a slow
	// free one.
	PolicyCriticalPath Policy = iota
	// PolicyNix imitates Nix 2.8: ready jobs start in discovery (id)
	// order, each on the capable remote machine with a free slot and the
	// least load/speedFactor (integer division; ties: higher speed, then
	// lower load, then file order), on the local machine only when no
	// remote one is free, and outputs are copied back to the coordinating
	// host after every remote build.
	PolicyNix
)

func (p Policy) String() string {
	switch p {
	case PolicyCriticalPath:
		return "nbuild"
	case PolicyNix:
		return "nix"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// Outcome is how an assignment ended.
type Outcome int

const (
	// Built: the job's outputs exist on the machine.
	Built Outcome = iota
	// Failed: the build itself failed. It is not retried; dependents are
	// skipped (with KeepGoing) or the run stops starting new builds.
	Failed
	// MachineLost: the machine could not be reached or died. The machine
	// is marked down for a back-off period and the job is scheduled again.
	MachineLost
	// InputsLost: outputs the job needs were held only by a machine that
	// is gone. Redo(jobs) puts their builds back; the job waits for them
	// again, its own machine is not blamed.
	InputsLost
	// MachineRefused: the machine will not build for this user (e.g. it
	// does not trust it). It is out of the run; the job goes elsewhere,
	// and jobs no other machine can build fail with the reason.
	MachineRefused
	// MachineUnreachable: the machine could not be reached after the
	// executor's bounded attempts to log in. It is out of the run, like a
	// refusing machine: the job goes elsewhere, and jobs no other machine
	// can build fail at once, naming the machines and why.
	MachineUnreachable
)

func (o Outcome) String() string {
	return [...]string{"built", "failed", "machine-lost", "inputs-lost", "machine-refused", "machine-unreachable"}[o]
}

// JobState is where a job is in a run.
type JobState uint8

const (
	Waiting JobState = iota // dependencies not built yet
	Ready                   // may start
	Running                 // assigned to a machine
	Done                    // built
	Failing                 // build failed, or no machine left to build it
	Skipped                 // a dependency failed (keep-going)
)

// Options tunes a Scheduler; the zero value is usable.
type Options struct {
	Policy Policy
	// KeepGoing continues after a failed build with every job that does
	// not depend on it (nix --keep-going); otherwise no new job starts
	// after the first failure.
	KeepGoing bool
	// Bandwidth estimates the bytes per second between the coordinating
	// host and machine m. Default: 12.5e6 (100 Mbit/s) for remote
	// machines; the local machine needs no copies.
	Bandwidth func(m int) float64
	// Backoff is how long a machine stays down after its first failure;
	// each further consecutive failure doubles it, up to MaxBackoff.
	// Defaults 30 s and 10 min.
	Backoff, MaxBackoff time.Duration
	// MaxMachineFailures consecutive failures drop a machine for the rest
	// of the run. Default 5.
	MaxMachineFailures int
}

// Assignment is a decision to build a job on a machine's slot.
type Assignment struct {
	Job, Machine, Slot int
	// Attempt counts the job's assignments; a result for an older attempt
	// (the machine was declared down meanwhile) is ignored.
	Attempt int
	Start   time.Time
	// Transfer is the expected time to copy the inputs the machine lacks
	// (and, under PolicyNix, the outputs back); Expected includes it.
	Transfer, Expected time.Duration
}

// ErrBuildFailed is wrapped by Scheduler.Err when some job did not build.
var ErrBuildFailed = errors.New("sched: build failed")

// Scheduler runs a Plan: an event-driven state machine with no goroutines
// and no clock of its own. Assign says what to start now; Done and
// MachineDown report what happened. It is not safe for concurrent use.
//
// Inside, a time is an offset from base, the first time it was given:
// comparing and adding time.Time values was a fifth of a 100,000-job
// simulation.
type Scheduler struct {
	plan *Plan
	opts Options

	base     time.Time
	haveBase bool

	state   []JobState
	pending []int32 // dependencies not yet built
	redos   []uint8 // times a job's inputs were lost (InputsLost)
	attempt []int32
	startAt []time.Duration
	reason  []string // why a job failed
	ready   readyQueues
	held    []uint64 // per job, a bitset of machines holding its outputs
	words   int      // uint64 words per job in held
	atHub   []bool   // outputs (or sources) are on the coordinating host
	// Per job, for transfer: the output size, and the least cost per byte
	// of fetching the outputs from a machine (not the host) holding them,
	// +Inf for none. Looking these up in the jobs and over the machines
	// was most of transfer's time.
	outBytes []float64
	srcInv   []float64
	// Per job, transfer plus build time on each capable machine (in the
	// order of plan.capable), valid while no dependency's holdings changed
	// since costAt: a job waiting for a busy machine is weighed again at
	// every event, and its inputs seldom moved meanwhile. heldAt is when
	// a job's holdings last changed, counted in changes (uint32: they are
	// bounded by jobs × machines and redos).
	cost    []time.Duration
	costOff []int32
	// noCopy marks jobs whose transfer time is always 0: they and their
	// dependencies have no bytes to copy (a plan's jobs before any build
	// was recorded). Their costs are the build times, worked out once
	// rather than checked against their dependencies' holdings at every
	// look.
	noCopy  []bool
	costAt  []uint32
	heldAt  []uint32
	changes uint32

	machines []machineState
	running  int
	finished int // jobs in Done, Failing or Skipped
	stopped  bool

	out     []Assignment
	skipped []int32
	// The classes with ready jobs and a free slot on an up machine, in
	// this Assign call. A closure has dozens of classes, most with no
	// ready job: nextClass looked at each of them for every job it
	// considered. A class drops out when it runs out of jobs or of jobs
	// it may set aside; the list is made again when a start fills a
	// machine (stale).
	cands     []int32
	freeStale bool
	booked    [][]time.Duration // per machine: this round's slot ends with bookings (a min-heap), or nil
	bookBuf   [][]time.Duration
}

type machineState struct {
	slots     []int32         // job per slot, -1 free
	slotEnd   []time.Duration // expected end per slot
	free      int
	failures  int
	downUntil time.Duration // up from then on; never is math.MinInt64
	dead      bool
	why       string  // why a refusing machine is out of the run
	invBW     float64 // seconds per byte to copy to/from it
}

// NewScheduler starts a run of plan: jobs without dependencies are ready.
func NewScheduler(plan *Plan, opts Options) *Scheduler {
	if opts.Backoff <= 0 {
		opts.Backoff = 30 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 10 * time.Minute
	}
	if opts.MaxMachineFailures <= 0 {
		opts.MaxMachineFailures = 5
	}
	n := len(plan.Jobs)
	s := &Scheduler{
		plan:    plan,
		opts:    opts,
		state:   make([]JobState, n),
		pending: make([]int32, n),
		redos:   make([]uint8, n),
		attempt: make([]int32, n),
		startAt: make([]time.Duration, n),
		reason:  make([]string, n),
		words:   (len(plan.Machines) + 63) / 64,
		atHub:   make([]bool, n),
	}
	s.held = make([]uint64, n*s.words)
	s.outBytes = make([]float64, n)
	s.srcInv = make([]float64, n)
	s.costOff = make([]int32, n+1)
	for id := range plan.Jobs {
		s.outBytes[id] = float64(plan.Jobs[id].OutputBytes)
		s.srcInv[id] = math.Inf(1)
		s.costOff[id+1] = s.costOff[id] + int32(len(plan.capable[id]))
	}
	s.noCopy = make([]bool, n)
	for id := range plan.Jobs {
		j := &plan.Jobs[id]
		s.noCopy[id] = j.InputBytes == 0 && j.OutputBytes == 0
		for _, d := range j.Deps {
			if plan.Jobs[d].OutputBytes != 0 {
				s.noCopy[id] = false
				break
			}
		}
	}
	s.cost = make([]time.Duration, s.costOff[n])
	s.costAt = make([]uint32, n)
	s.heldAt = make([]uint32, n)
	s.changes = 1 // costAt 0 is never computed
	s.ready.init(plan, opts.Policy == PolicyNix)
	s.machines = make([]machineState, len(plan.Machines))
	for i := range s.machines {
		m := &plan.Machines[i]
		ms := &s.machines[i]
		ms.slots = make([]int32, m.MaxJobs)
		for k := range ms.slots {
			ms.slots[k] = -1
		}
		ms.slotEnd = make([]time.Duration, m.MaxJobs)
		ms.free = int(m.MaxJobs)
		ms.downUntil = math.MinInt64
		if !m.Local {
			bw := 12.5e6
			if opts.Bandwidth != nil {
				bw = opts.Bandwidth(i)
			}
			if bw > 0 {
				ms.invBW = 1 / bw
			}
		}
	}
	s.booked = make([][]time.Duration, len(s.machines))
	s.bookBuf = make([][]time.Duration, len(s.machines))
	for id := range plan.Jobs {
		s.pending[id] = int32(len(plan.Jobs[id].Deps))
		if s.pending[id] == 0 {
			s.state[id] = Ready
			s.ready.push(int32(id))
		}
	}
	return s
}

// clock is t as an offset from the scheduler's base time, which is the
// first time it is given.
func (s *Scheduler) clock(t time.Time) time.Duration {
	if !s.haveBase {
		s.base, s.haveBase = t, true
	}
	return t.Sub(s.base)
}

// Assign returns the assignments to start at time now, each on a free slot
// of an up machine. The slice is reused by the next call.
func (s *Scheduler) Assign(now time.Time) []Assignment {
	out := s.assign(s.clock(now))
	for i := range out {
		out[i].Start = now
	}
	return out
}

func (s *Scheduler) assign(now time.Duration) []Assignment {
	s.out = s.out[:0]
	if s.stopped || s.ready.len() == 0 {
		return s.out
	}
	totalFree := 0
	for m := range s.machines {
		ms := &s.machines[m]
		if s.up(m, now) {
			totalFree += ms.free
		}
		s.booked[m] = nil
	}
	if totalFree == 0 {
		return s.out
	}
	// Ready jobs are queued per class (set of capable machines), so a
	// class whose machines are all busy costs nothing. The next job is the
	// best head among classes with a free slot. Jobs that choose to wait
	// for a busy machine are set aside and put back; a class stops being
	// scanned when it set aside enough jobs to book each of its slots
	// twice, which bounds a call's cost.
	s.skipped = s.skipped[:0]
	for i := range s.ready.skips {
		s.ready.skips[i] = 0
	}
	s.freeStale = true
	for totalFree > 0 {
		c := s.nextClass(now)
		if c < 0 {
			break
		}
		id := s.ready.heaps[c].pop()
		s.ready.n--
		var m int
		if s.opts.Policy == PolicyNix {
			m = s.pickNix(int(id), now)
		} else {
			m = s.pickEFT(int(id), now)
		}
		if m < 0 {
			s.skipped = append(s.skipped, id)
			s.ready.skips[c]++
			continue
		}
		s.start(int(id), m, now)
		totalFree--
		if s.machines[m].free == 0 {
			s.freeStale = true
		}
	}
	// Backwards, so each class's set-aside stack ends with its best job.
	for i := len(s.skipped) - 1; i >= 0; i-- {
		s.ready.putBack(s.skipped[i])
	}
	return s.out
}

// nextClass returns the class whose best ready job goes next, among the
// classes with a free slot on one of their machines, or -1.
func (s *Scheduler) nextClass(now time.Duration) int {
	if s.freeStale {
		s.cands = s.cands[:0]
		for c, ms := range s.plan.classes {
			if s.ready.heaps[c].len() == 0 || s.ready.skips[c] >= s.ready.limit[c] {
				continue
			}
			for _, m := range ms {
				if s.machines[m].free > 0 && s.up(int(m), now) {
					s.cands = append(s.cands, int32(c))
					break
				}
			}
		}
		s.freeStale = false
	}
	best := -1
	var bestE readyEntry
	kept := s.cands[:0]
	for _, c := range s.cands {
		h := &s.ready.heaps[c]
		if h.len() == 0 || s.ready.skips[c] >= s.ready.limit[c] {
			continue
		}
		kept = append(kept, c)
		if e := h.top(); best < 0 || e.before(bestE) {
			best, bestE = int(c), e
		}
	}
	s.cands = kept
	return best
}

func (s *Scheduler) up(m int, now time.Duration) bool {
	ms := &s.machines[m]
	return !ms.dead && now >= ms.downUntil
}

// pickEFT returns the machine where job id is expected to finish first if
// that machine has a free slot now, or -1 (having booked the machine's
// earliest slot for it, so lower-priority jobs of this round see it taken).
func (s *Scheduler) pickEFT(id int, now time.Duration) int {
	best, bestFree := -1, false
	var bestEnd time.Duration
	cost := s.costs(id)
	for k, m32 := range s.plan.capable[id] {
		m := int(m32)
		if s.machines[m].dead {
			continue
		}
		at, free := s.availableAt(m, now)
		end := at + cost[k]
		better := best < 0 || end < bestEnd ||
			end == bestEnd && (free && !bestFree ||
				free == bestFree && s.plan.Machines[m].SpeedFactor > s.plan.Machines[best].SpeedFactor)
		if better {
			best, bestFree, bestEnd = m, free, end
		}
	}
	if best < 0 {
		return -1
	}
	if !bestFree {
		s.book(best, now, bestEnd)
		return -1
	}
	return best
}

// availableAt is when machine m can next start a job: now when it has a
// free slot, else when its earliest running or booked slot is expected to
// end, or when it comes back up.
func (s *Scheduler) availableAt(m int, now time.Duration) (time.Duration, bool) {
	ms := &s.machines[m]
	if s.booked[m] == nil && ms.free > 0 && s.up(m, now) {
		return now, true
	}
	ends := s.slotEnds(m, now)
	if len(ends) == 0 {
		return 0, false
	}
	return ends[0], false
}

// slotEnds is when the slots of machine m are expected to be free, with
// this round's bookings, as a min-heap. It is worked out once a round,
// when m is first asked about without a free slot (a full or down
// machine's slots do not change within Assign), and kept in booked: every
// job set aside in a round scanned the slots twice. Which slot a booking
// takes does not matter, only the ends' values, so a heap will do.
func (s *Scheduler) slotEnds(m int, now time.Duration) []time.Duration {
	if s.booked[m] != nil {
		return s.booked[m]
	}
	ms := &s.machines[m]
	ends := s.bookBuf[m][:0]
	for k, j := range ms.slots {
		switch {
		case !s.up(m, now):
			ends = append(ends, ms.downUntil)
		case j < 0:
			ends = append(ends, now)
		default:
			ends = append(ends, max(ms.slotEnd[k], now))
		}
	}
	for i := len(ends)/2 - 1; i >= 0; i-- {
		siftDown(ends, i)
	}
	s.bookBuf[m], s.booked[m] = ends, ends
	return ends
}

// book reserves machine m's earliest slot until end for this round.
func (s *Scheduler) book(m int, now, end time.Duration) {
	ends := s.slotEnds(m, now)
	ends[0] = end
	siftDown(ends, 0)
}

// siftDown restores the min-heap order of h below i.
func siftDown(h []time.Duration, i int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if r := c + 1; r < len(h) && h[r] < h[c] {
			c = r
		}
		if h[i] <= h[c] {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// pickNix is Nix 2.8 build-remote's choice, or -1 when no capable machine
// has a free slot.
func (s *Scheduler) pickNix(id int, now time.Duration) int {
	best := -1
	var bestLoad uint
	for _, m32 := range s.plan.capable[id] {
		m := int(m32)
		mm := &s.plan.Machines[m]
		ms := &s.machines[m]
		if mm.Local || !s.up(m, now) || ms.free == 0 {
			continue
		}
		load := uint(len(ms.slots) - ms.free)
		if best < 0 {
			best, bestLoad = m, load
			continue
		}
		bm := &s.plan.Machines[best]
		a, b := load/mm.SpeedFactor, bestLoad/bm.SpeedFactor
		if a < b || a == b && (mm.SpeedFactor > bm.SpeedFactor || mm.SpeedFactor == bm.SpeedFactor && load < bestLoad) {
			best, bestLoad = m, load
		}
	}
	if best < 0 && s.plan.local >= 0 && s.up(s.plan.local, now) && s.machines[s.plan.local].free > 0 {
		for _, m := range s.plan.capable[id] {
			if int(m) == s.plan.local {
				return s.plan.local
			}
		}
	}
	return best
}

// costs is job id's transfer plus build time on each of its capable
// machines, computed again only when a dependency's holdings changed.
func (s *Scheduler) costs(id int) []time.Duration {
	cost := s.cost[s.costOff[id]:s.costOff[id+1]]
	if s.noCopy[id] {
		if s.costAt[id] == 0 {
			for k, m := range s.plan.capable[id] {
				cost[k] = s.buildTime(id, int(m))
			}
			s.costAt[id] = 1
		}
		return cost
	}
	if at := s.costAt[id]; at != 0 {
		fresh := true
		for _, d := range s.plan.Jobs[id].Deps {
			if s.heldAt[d] > at {
				fresh = false
				break
			}
		}
		if fresh {
			return cost
		}
	}
	for k, m := range s.plan.capable[id] {
		cost[k] = s.transfer(id, int(m)) + s.buildTime(id, int(m))
	}
	s.costAt[id] = s.changes
	return cost
}

// holdingsChanged notes that job id's outputs arrived somewhere or were
// lost, for costs.
func (s *Scheduler) holdingsChanged(id int) {
	s.changes++
	s.heldAt[id] = s.changes
}

func (s *Scheduler) buildTime(id, m int) time.Duration {
	return s.plan.Jobs[id].Expected / time.Duration(s.plan.Machines[m].SpeedFactor)
}

func (s *Scheduler) holds(id, m int) bool {
	if m == s.plan.local {
		return s.atHub[id]
	}
	return s.held[id*s.words+m/64]&(1<<(m%64)) != 0
}

func (s *Scheduler) setHeld(id, m int) {
	s.holdingsChanged(id)
	if m == s.plan.local {
		s.atHub[id] = true
		return
	}
	s.held[id*s.words+m/64] |= 1 << (m % 64)
	s.srcInv[id] = min(s.srcInv[id], s.machines[m].invBW)
}

// transfer estimates the time to bring job id's inputs to machine m: its
// sources from the coordinating host, and each dependency's outputs from
// the host, or else through the host from a machine that has them; and
// the time to copy outputs back (see below).
func (s *Scheduler) transfer(id, m int) time.Duration {
	if s.noCopy[id] {
		return 0
	}
	inv := s.machines[m].invBW
	j := &s.plan.Jobs[id]
	secs := float64(j.InputBytes) * inv
	for _, d := range j.Deps {
		if s.holds(d, m) {
			continue
		}
		bytes := s.outBytes[d]
		secs += bytes * inv
		// Held by no machine, the outputs cost nothing more (adding 0).
		if src := s.srcInv[d]; !s.atHub[d] && !math.IsInf(src, 1) {
			secs += bytes * src
		}
	}
	// Outputs come back at once under Nix's policy; otherwise only a
	// root's (a job nothing in the plan depends on: the user asked for
	// it) come back, and later consumers pay for the others.
	if s.opts.Policy == PolicyNix || (m != s.plan.local && len(s.plan.dependents[id]) == 0) {
		secs += float64(j.OutputBytes) * inv
	}
	return time.Duration(secs * float64(time.Second))
}

func (s *Scheduler) start(id, m int, now time.Duration) {
	ms := &s.machines[m]
	slot := 0
	for ms.slots[slot] >= 0 {
		slot++
	}
	tr := s.transfer(id, m)
	exp := tr + s.buildTime(id, m)
	ms.slots[slot] = int32(id)
	ms.slotEnd[slot] = now + exp
	ms.free--
	s.running++
	s.state[id] = Running
	s.attempt[id]++
	s.startAt[id] = now
	// The inputs are on m once it starts; what came from another machine
	// passed through the host.
	for _, d := range s.plan.Jobs[id].Deps {
		if !s.holds(d, m) {
			s.atHub[d] = true
			s.setHeld(d, m)
		}
	}
	s.out = append(s.out, Assignment{Job: id, Machine: m, Slot: slot, Attempt: int(s.attempt[id]),
		Start: s.base.Add(now), Transfer: tr, Expected: exp})
}

// current reports whether a is the job's live assignment.
func (s *Scheduler) current(a Assignment) bool {
	return a.Job >= 0 && a.Job < len(s.state) && s.state[a.Job] == Running &&
		int(s.attempt[a.Job]) == a.Attempt && a.Machine >= 0 && a.Machine < len(s.machines) &&
		a.Slot >= 0 && a.Slot < len(s.machines[a.Machine].slots) &&
		int(s.machines[a.Machine].slots[a.Slot]) == a.Job
}

func (s *Scheduler) release(a Assignment) {
	ms := &s.machines[a.Machine]
	ms.slots[a.Slot] = -1
	ms.free++
	s.running--
}

// Done reports how assignment a ended at time now. Reports for assignments
// that are no longer current (see MachineDown) are ignored. reason
// describes a failure for Err.
func (s *Scheduler) Done(a Assignment, o Outcome, reason string, now time.Time) {
	s.done(a, o, reason, s.clock(now))
}

func (s *Scheduler) done(a Assignment, o Outcome, reason string, now time.Duration) {
	if !s.current(a) {
		return
	}
	s.release(a)
	id := a.Job
	switch o {
	case Built:
		s.machines[a.Machine].failures = 0
		s.state[id] = Done
		s.finished++
		s.setHeld(id, a.Machine)
		if s.opts.Policy == PolicyNix {
			s.atHub[id] = true // setHeld noted the change
		}
		for _, k := range s.plan.dependents[id] {
			if s.pending[k]--; s.pending[k] == 0 && s.state[k] == Waiting {
				s.state[k] = Ready
				s.ready.push(k)
			}
		}
	case Failed:
		if reason == "" {
			reason = "build failed"
		}
		s.fail(id, fmt.Sprintf("on %s: %s", s.plan.Machines[a.Machine].Name(), reason))
	case InputsLost:
		// Bounded, so inputs that can never be fetched end the job
		// rather than rebuilding its dependencies forever.
		if s.redos[id]++; s.redos[id] > maxRedos {
			s.fail(id, fmt.Sprintf("on %s: inputs lost %d times: %s", s.plan.Machines[a.Machine].Name(), s.redos[id], reason))
			return
		}
		s.state[id] = Waiting
		s.requeue(id)
	case MachineRefused, MachineUnreachable:
		ms := &s.machines[a.Machine]
		ms.dead, ms.why = true, reason
		s.state[id] = Ready
		s.ready.push(int32(id))
		s.failOrphans()
	default:
		s.state[id] = Ready
		s.ready.push(int32(id))
		s.machineFailed(a.Machine, now)
	}
}

// maxRedos is how often a job may find its inputs lost before it fails.
const maxRedos = 2

// Redo puts back built jobs whose outputs are lost: the only machine
// holding them died before they were copied anywhere else. Each is ready
// to build again (on any capable machine), and its dependents that have
// not started wait for it again. Call it before reporting the consumer
// that found the outputs gone as InputsLost.
func (s *Scheduler) Redo(jobs []int) {
	for _, id := range jobs {
		if id < 0 || id >= len(s.state) || s.state[id] != Done {
			continue
		}
		s.finished--
		for w := 0; w < s.words; w++ {
			s.held[id*s.words+w] = 0
		}
		s.atHub[id] = false
		s.srcInv[id] = math.Inf(1)
		s.holdingsChanged(id)
		s.state[id] = Ready
		s.ready.push(int32(id))
		for _, k := range s.plan.dependents[id] {
			switch s.state[k] {
			case Ready:
				s.ready.remove(k)
				s.state[k] = Waiting
				s.pending[k]++
			case Waiting:
				s.pending[k]++
			}
		}
	}
}

// requeue makes a Waiting job ready if nothing it needs is missing.
func (s *Scheduler) requeue(id int) {
	n := int32(0)
	for _, d := range s.plan.Jobs[id].Deps {
		if s.state[d] != Done {
			n++
		}
	}
	s.pending[id] = n
	if n == 0 {
		s.state[id] = Ready
		s.ready.push(int32(id))
	}
}

// abandon forgets a running assignment that the caller cancelled: the job
// is ready again (and, the run being over, reported as not started).
func (s *Scheduler) abandon(a Assignment) {
	if !s.current(a) {
		return
	}
	s.release(a)
	s.state[a.Job] = Ready
	s.ready.push(int32(a.Job))
}

// MachineDown marks machine m down at time now (as a failure to reach it)
// and reschedules every job running on it. It returns their assignments,
// which the caller should cancel; later reports for them are ignored.
func (s *Scheduler) MachineDown(m int, now time.Time) []Assignment {
	return s.machineDown(m, s.clock(now))
}

func (s *Scheduler) machineDown(m int, now time.Duration) []Assignment {
	var lost []Assignment
	ms := &s.machines[m]
	for slot, j := range ms.slots {
		if j < 0 {
			continue
		}
		a := Assignment{Job: int(j), Machine: m, Slot: slot, Attempt: int(s.attempt[j]), Start: s.base.Add(s.startAt[j])}
		lost = append(lost, a)
		s.release(a)
		s.state[j] = Ready
		s.ready.push(j)
	}
	s.machineFailed(m, now)
	return lost
}

func (s *Scheduler) machineFailed(m int, now time.Duration) {
	ms := &s.machines[m]
	ms.failures++
	if ms.failures >= s.opts.MaxMachineFailures {
		ms.dead = true
		s.failOrphans()
		return
	}
	backoff := s.opts.Backoff << (ms.failures - 1)
	if backoff > s.opts.MaxBackoff || backoff <= 0 {
		backoff = s.opts.MaxBackoff
	}
	ms.downUntil = now + backoff
}

// failOrphans fails the unfinished jobs every capable machine of which is
// dead, naming each of those machines and why it is out.
func (s *Scheduler) failOrphans() {
	for id := range s.state {
		if st := s.state[id]; st != Waiting && st != Ready {
			continue
		}
		alive := false
		for _, m := range s.plan.capable[id] {
			alive = alive || !s.machines[m].dead
		}
		if alive {
			continue
		}
		var tried []string
		for _, m := range s.plan.capable[id] {
			why, name := s.machines[m].why, s.plan.Machines[m].Name()
			if why == "" {
				why = fmt.Sprintf("down after %d failures", s.machines[m].failures)
			}
			if !strings.Contains(why, name) {
				why = name + ": " + why
			}
			tried = append(tried, why)
		}
		if s.state[id] == Ready {
			s.ready.remove(int32(id))
		}
		s.fail(id, "every builder that can build it is down ("+strings.Join(tried, "; ")+")")
	}
}

// fail records job id as failed, then skips its dependents (KeepGoing) or
// stops the run.
func (s *Scheduler) fail(id int, reason string) {
	s.state[id] = Failing
	s.reason[id] = reason
	s.finished++
	if !s.opts.KeepGoing {
		s.stopped = true
		return
	}
	stack := append([]int32(nil), s.plan.dependents[id]...)
	for len(stack) > 0 {
		k := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if s.state[k] != Waiting {
			continue // already skipped, or failed itself
		}
		s.state[k] = Skipped
		s.finished++
		stack = append(stack, s.plan.dependents[k]...)
	}
}

// Finished reports whether the run is over: every job is built, failed or
// skipped, or the run stopped after a failure and nothing is running.
func (s *Scheduler) Finished() bool {
	return s.running == 0 && (s.stopped || s.finished == len(s.state))
}

// Running is the number of jobs running now.
func (s *Scheduler) Running() int { return s.running }

// Wake is the earliest time after now at which a down machine comes back
// while jobs are ready, or false: when nothing runs, the caller should
// call Assign again then.
func (s *Scheduler) Wake(now time.Time) (time.Time, bool) {
	at, ok := s.wake(s.clock(now))
	if !ok {
		return time.Time{}, false
	}
	return s.base.Add(at), true
}

func (s *Scheduler) wake(now time.Duration) (time.Duration, bool) {
	var at time.Duration
	found := false
	if s.stopped || s.ready.len() == 0 {
		return at, false
	}
	for m := range s.machines {
		ms := &s.machines[m]
		if !ms.dead && ms.downUntil > now && (!found || ms.downUntil < at) {
			at, found = ms.downUntil, true
		}
	}
	return at, found
}

// State is job id's state.
func (s *Scheduler) State(id int) JobState { return s.state[id] }

// Progress counts finished (built, failed or skipped) jobs, and returns
// the expected critical path still ahead: the largest rank of a ready or
// running job. Every waiting job has a ready or running ancestor of larger
// rank, so that is the largest rank of any unfinished job. It costs
// O(classes + slots) under PolicyCriticalPath (a scan of the ready jobs
// under PolicyNix), so a progress display may call it after every event.
func (s *Scheduler) Progress() (finished int, remaining time.Duration) {
	for c := range s.ready.heaps {
		h := &s.ready.heaps[c]
		if h.byID {
			for _, e := range h.items {
				remaining = max(remaining, s.plan.rank[e.id])
			}
			for _, e := range h.aside {
				remaining = max(remaining, s.plan.rank[e.id])
			}
		} else if h.len() > 0 {
			remaining = max(remaining, s.plan.rank[h.top().id])
		}
	}
	for m := range s.machines {
		for _, j := range s.machines[m].slots {
			if j >= 0 {
				remaining = max(remaining, s.plan.rank[j])
			}
		}
	}
	return s.finished, remaining
}

// Err summarises the run: nil when every job was built, else an error
// wrapping ErrBuildFailed that names each failed job and its reason.
func (s *Scheduler) Err() error {
	var failed []string
	byReason := map[string]int{} // reason -> index in failed
	var names [][]string
	var skipped, notRun int
	for id, st := range s.state {
		switch st {
		case Failing:
			// Jobs that failed for one reason (every builder down) are
			// listed together, so the reason is said once.
			i, ok := byReason[s.reason[id]]
			if !ok {
				i = len(failed)
				byReason[s.reason[id]] = i
				failed = append(failed, s.reason[id])
				names = append(names, nil)
			}
			names[i] = append(names[i], s.plan.Jobs[id].Name)
		case Skipped:
			skipped++
		case Done:
		default:
			notRun++
		}
	}
	if len(failed) == 0 && notRun == 0 {
		return nil
	}
	for i, reason := range failed {
		failed[i] = fmt.Sprintf("%s (%s)", strings.Join(names[i], ", "), reason)
	}
	return fmt.Errorf("%w: %s; %d dependent(s) skipped, %d not started", ErrBuildFailed, strings.Join(failed, ", "), skipped, notRun)
}

// readyQueues holds the ready jobs, one heap per class of capable
// machines.
type readyQueues struct {
	heaps []readyHeap
	skips []int // per class: jobs set aside in this Assign call
	limit []int // per class: how many may be set aside
	class []int32
	n     int
}

func (q *readyQueues) init(p *Plan, byID bool) {
	q.class = p.class
	q.heaps = make([]readyHeap, len(p.classes))
	q.skips = make([]int, len(p.classes))
	q.limit = make([]int, len(p.classes))
	for c, ms := range p.classes {
		q.heaps[c] = readyHeap{key: p.rank, byID: byID}
		q.limit[c] = 4
		for _, m := range ms {
			q.limit[c] += 2 * int(p.Machines[m].MaxJobs)
		}
	}
}

func (q *readyQueues) len() int { return q.n }

func (q *readyQueues) push(id int32) {
	q.heaps[q.class[id]].push(id)
	q.n++
}

// putBack returns a job that Assign popped and set aside. Jobs set aside
// in one call go back worst first (see readyHeap.aside).
func (q *readyQueues) putBack(id int32) {
	q.heaps[q.class[id]].putBack(id)
	q.n++
}

func (q *readyQueues) remove(id int32) {
	if q.heaps[q.class[id]].remove(id) {
		q.n--
	}
}

// readyHeap orders ready jobs: by rank, longest first (ties: lower id), or
// by id alone (PolicyNix's discovery order). Each entry carries its key,
// so comparisons read the heap alone: at 100,000 jobs the pops' lookups
// in the rank slice were a twelfth of a plan's instructions.
//
// Jobs that Assign pops and sets aside (they wait for a busy machine) go
// on aside, a stack sorted with the best job last, rather than back into
// the heap: they precede every job left in the class, so putting them
// back worst first keeps the stack sorted, and the next pop takes the
// better of the stack's top and the heap's. The same jobs are set aside
// call after call while a fast machine is busy; re-pushing them into the
// heap was a sixth of a 100,000-job simulation.
type readyHeap struct {
	items []readyEntry
	aside []readyEntry // jobs set aside, sorted, best last
	key   []time.Duration
	byID  bool
}

// readyEntry is a job in a readyHeap; key is its rank, or 0 by id.
type readyEntry struct {
	key time.Duration
	id  int32
}

// before reports whether a goes before b.
func (a readyEntry) before(b readyEntry) bool {
	return a.key > b.key || a.key == b.key && a.id < b.id
}

func (h *readyHeap) len() int { return len(h.items) + len(h.aside) }

// fromAside reports whether the next job is the top of the aside stack.
func (h *readyHeap) fromAside() bool {
	return len(h.aside) > 0 && (len(h.items) == 0 || h.aside[len(h.aside)-1].before(h.items[0]))
}

// top is the next job, of a non-empty heap.
func (h *readyHeap) top() readyEntry {
	if h.fromAside() {
		return h.aside[len(h.aside)-1]
	}
	return h.items[0]
}

func (h *readyHeap) entry(id int32) readyEntry {
	e := readyEntry{id: id}
	if !h.byID {
		e.key = h.key[id]
	}
	return e
}

func (h *readyHeap) push(id int32) {
	h.items = append(h.items, h.entry(id))
	h.up(len(h.items) - 1)
}

// putBack returns a popped job that precedes every job in the heap and
// follows every job already put back since (see aside).
func (h *readyHeap) putBack(id int32) {
	h.aside = append(h.aside, h.entry(id))
}

func (h *readyHeap) pop() int32 {
	if h.fromAside() {
		top := h.aside[len(h.aside)-1].id
		h.aside = h.aside[:len(h.aside)-1]
		return top
	}
	top := h.items[0].id
	h.removeAt(0)
	return top
}

func (h *readyHeap) remove(id int32) bool {
	for i, x := range h.aside {
		if x.id == id {
			h.aside = append(h.aside[:i], h.aside[i+1:]...)
			return true
		}
	}
	for i, x := range h.items {
		if x.id == id {
			h.removeAt(i)
			return true
		}
	}
	return false
}

func (h *readyHeap) removeAt(i int) {
	last := len(h.items) - 1
	h.items[i] = h.items[last]
	h.items = h.items[:last]
	if i == last {
		return
	}
	h.down(i)
	h.up(i)
}

func (h *readyHeap) up(i int) {
	items := h.items
	e := items[i]
	for i > 0 {
		p := (i - 1) / 2
		if !e.before(items[p]) {
			break
		}
		items[i] = items[p]
		i = p
	}
	items[i] = e
}

func (h *readyHeap) down(i int) {
	items := h.items
	n := len(items)
	e := items[i]
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && items[r].before(items[l]) {
			c = r
		}
		if !items[c].before(e) {
			break
		}
		items[i] = items[c]
		i = c
	}
	items[i] = e
}
