package bench

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/nbuild/nbuild/bench/gen/graphgen"
	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/sched/plan"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/location"
)

// PlanMachines are the builders of the graph figures in NOTES-graph.md:
// the local x86_64 machine (one slot, Nix's default features with kvm)
// and an 8-slot aarch64/riscv64 builder, so that nothing in a generated
// corpus is unbuildable.
func PlanMachines(tb testing.TB) []sched.Machine {
	tb.Helper()
	kvm := true
	local, err := sched.LocalMachine(sched.Conf{"system": "x86_64-linux"}, sched.LocalOptions{KVM: &kvm})
	if err != nil {
		tb.Fatal(err)
	}
	remote, err := sched.ParseMachines("ssh://arm aarch64-linux,riscv64-linux - 8 1 big-parallel,kvm,nixos-test", sched.ParseOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return append([]sched.Machine{local}, remote...)
}

// PlanBuilders are the local machine of PlanMachines and the builders of
// testdata/machines (the README's `--builders @testdata/machines`): five
// machines of mixed speeds, where the trivial derivations' short
// estimates make the plan's simulation reconsider waiting jobs at every
// completion.
func PlanBuilders(tb testing.TB, testdata string) []sched.Machine {
	tb.Helper()
	remote, err := sched.ParseMachines("@"+filepath.Join(testdata, "machines"), sched.ParseOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return append(PlanMachines(tb)[:1], remote...)
}

// PlanStep is what `nbuild graph --store DIR` does for a corpus once its
// graph snapshot exists, in one process: the graph loaded from the
// snapshot, validity from the chroot store (the existence answer cached
// beside the snapshot, as the command keeps it), the plan, and the
// summary. Phase picks a part to time alone; the others are done once
// before the loop.
type PlanStep struct {
	Corpus   *graphgen.Corpus
	Machines []sched.Machine

	dir  string // snapshots and existence caches
	root store.Path
	loc  location.Location
	g    *graph.Graph
	vi   *plan.Validity
	p    *plan.Plan
}

// planPhases are the parts of a PlanStep timed alone, after the whole;
// "new-builders" is "new" with PlanBuilders, "new-cached" is "new" with
// its schedule read from a sched.SimCache (as a repeated nbuild graph
// does).
var planPhases = []string{"warm", "load", "validity", "new", "summary", "new-builders", "new-cached"}

// planCases are PlanStep's phases on closures of 3,500 to 100,001
// derivations. A corpus is made (or found in the cache) when a case of its
// size runs, not here: 100,001 derivations take ~5 minutes to instantiate
// the first time, and are only made when asked for (-bench 'Plan/drvs=100000').
func planCases(ctx context.Context, env Env) ([]Case, error) {
	var cases []Case
	for _, n := range []int{3500, 20000, 100000} {
		for _, phase := range planPhases {
			cases = append(cases, Case{fmt.Sprintf("drvs=%d/%s", n, phase), func(b *testing.B) {
				c, err := GraphCorpus(b.Context(), env.cacheDir(), n)
				if err != nil {
					b.Fatal(err)
				}
				machines := PlanMachines(b)
				if phase == "new-builders" {
					phase, machines = "new", PlanBuilders(b, env.Testdata)
				}
				NewPlanStep(b, c, machines).Bench(b, phase)
			}})
		}
	}
	return cases, nil
}

// NewPlanStep prepares a PlanStep: the snapshot and existence cache are
// written, and one plan made, so every phase starts warm.
func NewPlanStep(b *testing.B, c *graphgen.Corpus, machines []sched.Machine) *PlanStep {
	s := &PlanStep{Corpus: c, Machines: machines, dir: b.TempDir()}
	var err error
	if s.root, err = store.ParsePath(c.Root); err != nil {
		b.Fatal(err)
	}
	if s.loc, err = location.Parse(c.Dir, location.Options{}); err != nil {
		b.Fatal(err)
	}
	for range 2 { // the second load reads the snapshot the first saved
		if err := s.run(context.Background(), "warm"); err != nil {
			b.Fatal(err)
		}
	}
	if !s.g.FromSnapshot() {
		b.Fatal("the graph was not read from its snapshot")
	}
	return s
}

// Bench times one phase: "warm" (all of it), "load", "validity", "new"
// (plan.New), "new-cached" (plan.New with a SimCache that the first call
// fills) or "summary" (WriteSummary). Bytes are the corpus's .drv
// bytes, so MB/s compare with GraphLoad.
func (s *PlanStep) Bench(b *testing.B, phase string) {
	b.ReportAllocs()
	b.SetBytes(s.Corpus.DrvBytes)
	ctx := context.Background()
	for b.Loop() {
		if err := s.run(ctx, phase); err != nil {
			b.Fatal(err)
		}
	}
}

func (s *PlanStep) run(ctx context.Context, phase string) error {
	all := phase == "warm"
	var err error
	if all || phase == "load" {
		s.g, err = graph.Load(ctx, s.Corpus.Dir, []store.Path{s.root}, graph.Options{SnapshotDir: s.dir})
		if err != nil {
			return err
		}
	}
	if all || phase == "validity" {
		s.vi, err = plan.QueryValidity(ctx, s.g, s.g.Roots(), plan.ValidityOptions{Store: s.loc, CacheDir: s.dir, NoSubstituters: true})
		if err != nil {
			return err
		}
	}
	if all || phase == "new" || phase == "new-cached" {
		cacheDir := ""
		if phase == "new-cached" {
			cacheDir = s.dir
		}
		s.p, err = plan.New(s.g, s.vi, plan.Options{Machines: s.Machines, DefaultDuration: 5 * time.Minute, CacheDir: cacheDir})
		if err != nil {
			return err
		}
	}
	if all || phase == "summary" {
		return s.p.WriteSummary(io.Discard)
	}
	return nil
}
