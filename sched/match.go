package sched

import (
	"fmt"
	"slices"
	"strings"
)

// CanBuild reports whether machine m may build a derivation needing
// platform p, with Nix 2.8 build-remote's rule [2.8 src/build-remote/
// build-remote.cc main_build_remote; src/libstore/machines.cc allSupported,
// mandatoryMet]: the system is "builtin" or one of m's systems, every
// required feature is supported or mandatory on m, and every mandatory
// feature of m is required. A machine with no job slots builds nothing
// (2.8's hook would answer "postpone" for it forever).
//
// For the local machine Nix's local rule applies instead: the system is
// "builtin" or one of its systems (system + extra-platforms) and every
// required feature is a system feature.
func CanBuild(m *Machine, p Platform) bool { return whyNot(m, p) == "" }

// whyNot returns "" when m can build p, else the reason it cannot.
func whyNot(m *Machine, p Platform) string {
	if p.system != "builtin" && !slices.Contains(m.Systems, p.system) {
		return fmt.Sprintf("builder %s does not build system %s", m.Name(), p.system)
	}
	req := p.Features()
	for _, f := range req {
		if !slices.Contains(m.SupportedFeatures, f) && !slices.Contains(m.MandatoryFeatures, f) {
			return fmt.Sprintf("builder %s lacks feature %s", m.Name(), f)
		}
	}
	for _, f := range m.MandatoryFeatures {
		if !slices.Contains(req, f) {
			return fmt.Sprintf("builder %s requires mandatory feature %s", m.Name(), f)
		}
	}
	if m.MaxJobs == 0 {
		return fmt.Sprintf("builder %s has max-jobs 0", m.Name())
	}
	return ""
}

// Why explains why no machine can build a derivation needing p, or returns
// "" when one can. When no machine builds p's system at all, the answer is
// "no builder for system S"; otherwise it lists, for each machine that has
// the system, what it lacks ("builder X lacks feature kvm", "builder X
// requires mandatory feature big-parallel"), joined by "; ".
func Why(p Platform, machines []Machine) string {
	var reasons []string
	for i := range machines {
		m := &machines[i]
		r := whyNot(m, p)
		if r == "" {
			return ""
		}
		if p.system == "builtin" || slices.Contains(m.Systems, p.system) {
			reasons = append(reasons, r)
		}
	}
	if len(reasons) == 0 {
		if len(machines) == 0 {
			return "no builders"
		}
		return "no builder for system " + p.system
	}
	return strings.Join(reasons, "; ")
}
