package sched

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nbuild/nbuild/store/cachedir"
)

// SimCache keeps simulated timelines in a directory, so that simulating
// the same plan again reads the answer instead of working it out: a plan
// of 100,000 derivations is simulated in about 0.2 s, and a user looking
// at one plan from several sides (the summary, then --format tree, then
// --why-builder) asks for the same simulation each time.
//
// A timeline is filed under a hash of everything the simulation depends
// on: each job's platform, dependencies, expected time, byte counts and
// preferLocalBuild; the durations; every machine's URI, systems, slots,
// speed and features; the options; and the identity of the running
// program (its path, size and modification time), so a rebuilt nbuild,
// whose scheduler may decide differently, never reads an older one's
// answers. Simulations with failures, outages or a Bandwidth function,
// which cannot be hashed, are not cached. A file that is unreadable or
// does not decode is ignored and replaced.
type SimCache struct {
	// Dir holds the timelines (*.sim files); "" disables the cache.
	Dir string
}

// maxSimFiles bounds a SimCache directory: a timeline of 100,000 builds
// takes about 1 MB.
const maxSimFiles = 32

const simMagic = "nbuild-sim 1\n"

// Plan is NewPlan(jobs, machines) and SimulatePlan of it with dur and
// opts, the simulation answered from the cache when it holds it and
// remembered there when it does not. The plan is made on another
// goroutine while the cache is read. Failing to read or write the cache
// only costs time.
func (c SimCache) Plan(jobs []Job, machines []Machine, dur []time.Duration, opts SimOptions) (*Plan, *Timeline, error) {
	if c.Dir == "" || opts.Fail != nil || len(opts.Outages) > 0 || opts.Bandwidth != nil || len(dur) != len(jobs) {
		plan, err := NewPlan(jobs, machines)
		if err != nil {
			return nil, nil, err
		}
		tl, err := SimulatePlan(plan, dur, opts)
		return plan, tl, err
	}
	type made struct {
		plan *Plan
		err  error
	}
	ch := make(chan made, 1)
	go func() {
		plan, err := NewPlan(jobs, machines)
		ch <- made{plan, err}
	}()
	// Decoding needs the jobs and machines only.
	file, cached := c.load(&Plan{Jobs: jobs, Machines: machines}, dur, opts)
	m := <-ch
	if m.err != nil {
		return nil, nil, m.err
	}
	if cached != nil {
		return m.plan, cached, nil
	}
	tl, err := SimulatePlan(m.plan, dur, opts)
	if err == nil && file != "" {
		if cachedir.WriteFile(c.Dir, 0o755, file, appendTimeline(nil, tl)) == nil {
			cachedir.Prune(c.Dir, ".sim", maxSimFiles)
		}
	}
	return m.plan, tl, err
}

// load returns the name of the file in c.Dir that holds (or will hold)
// the simulation of jobs's Jobs on its Machines with dur and opts, and
// its timeline when the file has a good one; file is "" when no key can
// be made.
func (c SimCache) load(jobs *Plan, dur []time.Duration, opts SimOptions) (file string, tl *Timeline) {
	key, ok := simKey(jobs, dur, opts.Options)
	if !ok {
		return "", nil
	}
	file = key + ".sim"
	data, err := os.ReadFile(filepath.Join(c.Dir, file))
	if err != nil {
		return file, nil
	}
	tl, err = decodeTimeline(data, jobs, opts.Policy)
	if err != nil {
		return file, nil
	}
	return file, tl
}

// programID identifies the running program's build: its path, size and
// modification time; "" when they cannot be found (no cache then).
var programID = sync.OnceValue(func() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	info, err := os.Stat(exe)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%s\x00%d\x00%d", exe, info.Size(), info.ModTime().UnixNano())
})

// simKey is the hex hash of everything a simulation of plan with dur and
// opts depends on, and false when it cannot be made.
func simKey(plan *Plan, dur []time.Duration, opts Options) (string, bool) {
	id := programID()
	if id == "" {
		return "", false
	}
	h := sha256.New()
	b := make([]byte, 0, 64<<10)
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	num := func(v int64) { b = binary.AppendVarint(b, v) }
	flag := func(v bool) {
		if v {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	// Written in pieces: the whole encoding of 100,000 jobs is megabytes.
	flush := func() {
		if len(b) > 60<<10 {
			h.Write(b)
			b = b[:0]
		}
	}
	str(simMagic)
	str(id)
	num(int64(opts.Policy))
	num(int64(opts.Backoff))
	num(int64(opts.MaxBackoff))
	num(int64(opts.MaxMachineFailures))
	flag(opts.KeepGoing)
	num(int64(len(plan.Machines)))
	for i := range plan.Machines {
		m := &plan.Machines[i]
		str(m.URI)
		for _, l := range [][]string{m.Systems, m.SupportedFeatures, m.MandatoryFeatures} {
			num(int64(len(l)))
			for _, s := range l {
				str(s)
			}
		}
		num(int64(m.MaxJobs))
		num(int64(m.SpeedFactor))
		flag(m.Local)
	}
	num(int64(len(plan.Jobs)))
	// Platforms repeat: after its first use, a platform is named by its
	// number in order of first use.
	platforms := map[Platform]int64{}
	for i := range plan.Jobs {
		j := &plan.Jobs[i]
		if k, ok := platforms[j.Platform]; ok {
			num(k)
		} else {
			platforms[j.Platform] = int64(len(platforms))
			num(-1)
			str(j.Platform.system)
			str(j.Platform.features)
		}
		flag(j.PreferLocal)
		num(int64(j.Expected))
		num(int64(dur[i]))
		num(j.InputBytes)
		num(j.OutputBytes)
		num(int64(len(j.Deps)))
		for _, d := range j.Deps {
			num(int64(d))
		}
		flush()
	}
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)[:16]), true
}

// simCRC is made on first use, as a plain package variable it would cost
// every nbuild command its table.
var simCRC = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// appendTimeline appends the cached form of tl: the magic, the entries
// (job, machine, slot, start, duration, outcome), the lower bound, and a
// CRC-32C of everything before it. Names and systems come from the plan
// when it is read back.
func appendTimeline(dst []byte, tl *Timeline) []byte {
	start := len(dst)
	dst = append(dst, simMagic...)
	dst = binary.AppendUvarint(dst, uint64(len(tl.Entries)))
	for i := range tl.Entries {
		e := &tl.Entries[i]
		dst = binary.AppendUvarint(dst, uint64(e.Job))
		dst = binary.AppendUvarint(dst, uint64(e.Machine))
		dst = binary.AppendUvarint(dst, uint64(e.Slot))
		dst = binary.AppendVarint(dst, int64(e.Start))
		dst = binary.AppendVarint(dst, int64(e.End-e.Start))
		dst = append(dst, byte(outcomeOf(e.Outcome)))
	}
	dst = binary.AppendVarint(dst, int64(tl.LowerBound))
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], simCRC()))
}

// outcomeOf is the Outcome whose String is s.
func outcomeOf(s string) Outcome {
	for o := Built; o <= MachineUnreachable; o++ {
		if o.String() == s {
			return o
		}
	}
	return -1
}

var errBadSim = errors.New("sched: not a cached timeline of this plan")

// decodeTimeline reads what appendTimeline wrote for plan, checking every
// index against it.
func decodeTimeline(data []byte, plan *Plan, policy Policy) (*Timeline, error) {
	if len(data) < len(simMagic)+4 || string(data[:len(simMagic)]) != simMagic {
		return nil, errBadSim
	}
	body := data[:len(data)-4]
	if crc32.Checksum(body, simCRC()) != binary.LittleEndian.Uint32(data[len(body):]) {
		return nil, errBadSim
	}
	r := body[len(simMagic):]
	bad := false
	uv := func() uint64 {
		v, n := binary.Uvarint(r)
		if n <= 0 {
			bad = true
			return 0
		}
		r = r[n:]
		return v
	}
	sv := func() int64 { // binary.AppendVarint's zig-zag
		u := uv()
		return int64(u>>1) ^ -int64(u&1)
	}
	n := uv()
	// An entry takes at least 6 bytes: no count beyond the data is
	// believed (nor allocated for).
	if bad || n > uint64(len(r)/6) {
		return nil, errBadSim
	}
	tl := newTimeline(plan, policy)
	tl.Entries = slices.Grow(tl.Entries[:0], int(n))
	for range n {
		job, m, slot := uv(), uv(), uv()
		start, d := sv(), sv()
		if bad || len(r) == 0 || job >= uint64(len(plan.Jobs)) || m >= uint64(len(plan.Machines)) ||
			slot >= uint64(plan.Machines[m].MaxJobs) || start < 0 || d < 0 || start > maxSimTime-d || r[0] > byte(MachineUnreachable) {
			return nil, errBadSim
		}
		o := Outcome(r[0])
		r = r[1:]
		tl.add(plan, int(job), int(m), int(slot), time.Duration(start), time.Duration(start+d), o)
	}
	tl.LowerBound = time.Duration(sv())
	if bad || len(r) != 0 || tl.LowerBound < 0 {
		return nil, errBadSim
	}
	return tl, nil
}

// maxSimTime bounds a decoded time, so start+duration cannot overflow.
const maxSimTime = int64(1) << 62
