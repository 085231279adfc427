package plan_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/sched/plan"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/location"
)

// fixturePlan plans a root of testdata/store on the local machine (x86_64,
// 2 jobs, no kvm, localFeatures) and builders.
func fixturePlan(t *testing.T, root, localFeatures, builders string) *plan.Plan {
	t.Helper()
	ctx := context.Background()
	loc, err := location.Parse("../../testdata/store", location.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := graph.Load(ctx, loc.Root, []store.Path{store.MustParsePath(root)}, graph.Options{})
	if err != nil {
		t.Fatal(err)
	}
	noKVM := false
	local, err := sched.LocalMachine(sched.Conf{"system": "x86_64-linux", "max-jobs": "2", "system-features": localFeatures}, sched.LocalOptions{KVM: &noKVM})
	if err != nil {
		t.Fatal(err)
	}
	remote, err := sched.ParseMachines(builders, sched.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vi, err := plan.QueryValidity(ctx, g, g.Roots(), plan.ValidityOptions{Store: loc})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.New(g, vi, plan.Options{Machines: append([]sched.Machine{local}, remote...), DefaultDuration: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const vmTest = "/nix/store/q1hzbg46y1c70s84fm8cx481l1102mc9-vm-test-run-pi-boot.drv"

// TestBuilderReason: every derivation to build says why its builder.
func TestBuilderReason(t *testing.T) {
	// arm takes only big-parallel aarch64 builds (mandatory), arm2 the
	// rest; big alone builds the big-parallel x86_64 kernels (mandatory).
	p := fixturePlan(t, vmTest, "nixos-test", "ssh://arm aarch64-linux - 4 1 - big-parallel;ssh://arm2 aarch64-linux - 4 1;"+
		"ssh://kvm x86_64-linux - 2 1 kvm,nixos-test;ssh://big x86_64-linux - 8 8 - big-parallel")
	seen := map[string]bool{}
	for id := range p.Graph.Len() {
		n := graph.NodeID(id)
		node := p.Graph.Node(n)
		why := p.BuilderReason(n)
		if p.State(n) != plan.Build {
			if why != "" {
				t.Errorf("%s (%s) has a builder reason %q", node.Name(), p.State(n), why)
			}
			continue
		}
		b := p.Machines[p.Builder(n)].Name()
		var want string
		switch {
		case node.Name() == "vm-test-run-pi-boot":
			want = "only builder for system x86_64-linux that takes it: builder local lacks feature kvm; builder ssh://big lacks feature kvm"
		case b == "ssh://arm" || b == "ssh://big":
			want = "only builder for mandatory feature big-parallel"
		case b == "ssh://arm2":
			want = "only builder for system aarch64-linux that takes it: builder ssh://arm requires mandatory feature big-parallel"
		case node.PreferLocalBuild:
			want = "preferLocalBuild"
		default:
			want = "earliest expected finish of "
		}
		if !strings.HasPrefix(why, want) {
			t.Errorf("%s on %s: reason %q, want %q", node.Name(), b, why, want)
		}
		seen[want] = true
	}
	if len(seen) != 5 {
		t.Errorf("the fixture exercises only %d of the 5 reasons: %v", len(seen), seen)
	}
}

// TestUnbuildableGroups: derivations no builder can build are grouped by
// cause with a hint, and the text lists the first few of each.
func TestUnbuildableGroups(t *testing.T) {
	// No aarch64 builder at all, and no x86_64 builder with kvm.
	p := fixturePlan(t, vmTest, "big-parallel", "ssh://plain x86_64-linux - 2 1 big-parallel")
	groups := p.UnbuildableGroups()
	causes := map[string]int{}
	for _, g := range groups {
		causes[g.Cause] = len(g.Nodes)
		if g.Hint == "" {
			t.Errorf("%s: no hint", g.Cause)
		}
	}
	if causes["no builder for system aarch64-linux"] == 0 || causes["no x86_64-linux builder with feature kvm,nixos-test"] != 0 && len(causes) != 2 {
		t.Errorf("groups %v", causes)
	}
	var buf bytes.Buffer
	p.WriteUnbuildable(&buf)
	out := buf.String()
	n := causes["no builder for system aarch64-linux"]
	if n > 5 && !strings.Contains(out, "... and ") {
		t.Errorf("%d in a group but no \"and N more\":\n%s", n, out)
	}
	if !strings.Contains(out, "hint: add a aarch64-linux builder") || strings.Count(out, "\n    /nix/store/") > 5*len(groups) {
		t.Errorf("text:\n%s", out)
	}
}

// TestTrivialEstimate: preferLocalBuild derivations never built before
// are expected to take TrivialDuration, not the default.
func TestTrivialEstimate(t *testing.T) {
	p := fixturePlan(t, vmTest, "big-parallel", "ssh://arm aarch64-linux - 4 1;ssh://kvm x86_64-linux - 2 1 kvm,nixos-test,big-parallel")
	trivial := 0
	for id := range p.Graph.Len() {
		n := graph.NodeID(id)
		d, known := p.Expected(n)
		if known {
			t.Fatalf("%s: a duration is known without a cache", p.Graph.Node(n).Name())
		}
		if p.Graph.Node(n).PreferLocalBuild {
			trivial++
			if d != plan.TrivialDuration {
				t.Errorf("%s: expected %s, want %s", p.Graph.Node(n).Name(), d, plan.TrivialDuration)
			}
		} else if d != 5*time.Minute {
			t.Errorf("%s: expected %s, want the default", p.Graph.Node(n).Name(), d)
		}
	}
	if trivial == 0 {
		t.Error("the fixture has no preferLocalBuild derivation")
	}
	var buf bytes.Buffer
	p.WriteEstimate(&buf)
	if !strings.Contains(buf.String(), "trivial") || !strings.Contains(buf.String(), "estimated time on these builders") {
		t.Errorf("estimate:\n%s", buf.String())
	}
}
