package plan_test

import (
	"context"
	"fmt"
	"log"
	"sort"
	"time"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/sched/plan"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/location"
)

// Plan the cross-compiled NixOS system that ships in testdata for the
// local machine and one aarch64 builder: what must be built, where, and
// the critical path. This is what `nbuild graph` prints, from the library.
func ExampleNew() {
	ctx := context.Background()
	// A chroot store directory: its .drv files are read directly, and an
	// output counts as valid when its path exists there.
	loc, err := location.Parse("../../testdata/store", location.Options{})
	if err != nil {
		log.Fatal(err)
	}
	root := store.MustParsePath("/nix/store/3xmczkalmsfbp7871hqlvz4wmig0bkv5-nixos-system-pi-23.05.drv")
	g, err := graph.Load(ctx, loc.Root, []store.Path{root}, graph.Options{})
	if err != nil {
		log.Fatal(err)
	}

	// The local machine as nix.conf describes it, then the builders, in
	// the syntax of Nix's `builders` setting.
	noKVM := false
	local, err := sched.LocalMachine(sched.Conf{"system": "x86_64-linux", "max-jobs": "2"}, sched.LocalOptions{KVM: &noKVM})
	if err != nil {
		log.Fatal(err)
	}
	builders, err := sched.ParseMachines("ssh-ng://arm-box aarch64-linux - 8 2 big-parallel", sched.ParseOptions{})
	if err != nil {
		log.Fatal(err)
	}

	vi, err := plan.QueryValidity(ctx, g, g.Roots(), plan.ValidityOptions{Store: loc})
	if err != nil {
		log.Fatal(err)
	}
	p, err := plan.New(g, vi, plan.Options{Machines: append([]sched.Machine{local}, builders...), DefaultDuration: 5 * time.Minute})
	if err != nil {
		log.Fatal(err)
	}

	systems := p.CountBySystem()
	names := make([]string, 0, len(systems))
	for s := range systems {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, s := range names {
		fmt.Printf("%s: %d to build, %d valid\n", s, systems[s].Build, systems[s].Valid)
	}
	for i, by := range p.BuildsByBuilder() {
		fmt.Printf("%s builds %v\n", p.Machines[i].Name(), by)
	}
	path, _ := p.CriticalPath()
	fmt.Printf("critical path: %d derivations, ending with %s\n", len(path), g.Node(path[0]).Name())
	// Output:
	// aarch64-linux: 8 to build, 0 valid
	// x86_64-linux: 24 to build, 0 valid
	// local builds map[x86_64-linux:24]
	// ssh-ng://arm-box builds map[aarch64-linux:8]
	// critical path: 13 derivations, ending with nixos-system-pi-23.05
}
