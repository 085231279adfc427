package sched

import "testing"

func TestCanBuildAndWhy(t *testing.T) {
	machines := []Machine{
		{URI: "ssh://plain", Systems: []string{"x86_64-linux", "i686-linux"}, MaxJobs: 4, SpeedFactor: 1},
		{URI: "ssh://kvmhost", Systems: []string{"x86_64-linux"}, MaxJobs: 2, SpeedFactor: 1, SupportedFeatures: []string{"kvm"}},
		{URI: "ssh://big", Systems: []string{"x86_64-linux"}, MaxJobs: 8, SpeedFactor: 4, MandatoryFeatures: []string{"big-parallel"}},
		{URI: "ssh://arm", Systems: []string{"aarch64-linux"}, MaxJobs: 2, SpeedFactor: 1},
		{URI: "ssh://off", Systems: []string{"powerpc64le-linux"}, MaxJobs: 0, SpeedFactor: 1},
	}
	tests := []struct {
		name string
		p    Platform
		can  []bool // per machine
		why  string
	}{
		{"Plain", MustPlatform("x86_64-linux"), []bool{true, true, false, false, false}, ""},
		{"KVMOnlyOnKVMHost", MustPlatform("x86_64-linux", "kvm"), []bool{false, true, false, false, false}, ""},
		{"MandatoryMet", MustPlatform("x86_64-linux", "big-parallel"), []bool{false, false, true, false, false}, ""},
		{"MandatoryNotSupportedElsewhere", MustPlatform("x86_64-linux", "big-parallel", "kvm"), []bool{false, false, false, false, false},
			"builder ssh://plain lacks feature big-parallel; builder ssh://kvmhost lacks feature big-parallel; builder ssh://big lacks feature kvm"},
		{"BuiltinAnywhereWithoutMandatory", MustPlatform("builtin"), []bool{true, true, false, true, false}, ""},
		{"OtherSystem", MustPlatform("i686-linux"), []bool{true, false, false, false, false}, ""},
		{"NoSystem", MustPlatform("riscv64-linux"), []bool{false, false, false, false, false}, "no builder for system riscv64-linux"},
		{"FeatureMissing", MustPlatform("aarch64-linux", "kvm"), []bool{false, false, false, false, false}, "builder ssh://arm lacks feature kvm"},
		{"NoSlots", MustPlatform("powerpc64le-linux"), []bool{false, false, false, false, false}, "builder ssh://off has max-jobs 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range machines {
				if got := CanBuild(&machines[i], tt.p); got != tt.can[i] {
					t.Errorf("CanBuild(%s, %s) = %v", machines[i].URI, tt.p, got)
				}
			}
			if got := Why(tt.p, machines); got != tt.why {
				t.Errorf("Why = %q, want %q", got, tt.why)
			}
		})
	}
	// A machine whose only system is x86_64-linux and that mandates
	// big-parallel is never given a job without it.
	if Why(MustPlatform("x86_64-linux"), machines[2:3]) != "builder ssh://big requires mandatory feature big-parallel" {
		t.Errorf("mandatory reason: %q", Why(MustPlatform("x86_64-linux"), machines[2:3]))
	}
	if Why(MustPlatform("x86_64-linux"), nil) != "no builders" {
		t.Error("empty machine list")
	}
}
