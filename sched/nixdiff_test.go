package sched

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store/storetest"
)

// TestParseMachinesAgainstNix hands each specification to the real Nix 2.8
// (nix-build --builders on a derivation for a system no machine has) and
// compares what its build hook reports — either the "bad machine
// specification" error or its "available machines" listing (systems, max
// jobs, supported and mandatory features, in file order) — with
// ParseMachines.
func TestParseMachinesAgainstNix(t *testing.T) {
	storetest.RequireTrusted(t) // the daemon takes --builders from trusted users only
	dir := t.TempDir()
	expr := filepath.Join(dir, "probe.nix")
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("probe.nix", `derivation { name = "nbuild-sched-probe"; system = "nbuild-no-such-system"; builder = "/bin/sh"; args = ["-c" "echo > $out"]; }`)
	out, err := exec.Command("nix-instantiate", "--no-gc-warning", expr).Output()
	if err != nil {
		t.Fatalf("nix-instantiate: %v", err)
	}
	drv := strings.TrimSpace(string(out))
	valid := write("machines.valid", validMachinesFile)
	bad := write("machines.bad", "nix@scratchy.labs.cs.uu.nl - - eight\n")
	nested := write("nested", "a.example i686-linux,x86_64-linux - 7\n@"+valid+"\n@"+dir+"/missing\n")
	system := nixSystem(t)

	specs := []string{
		"nix@scratchy.labs.cs.uu.nl",
		"nix@scratchy.labs.cs.uu.nl - - - - - - -",
		"nix@scratchy.labs.cs.uu.nl\nnix@itchy.labs.cs.uu.nl",
		"nix@scratchy.labs.cs.uu.nl ; nix@itchy.labs.cs.uu.nl",
		"nix@scratchy.labs.cs.uu.nl\ti686-linux\t/home/nix/.ssh/id\t8\t3\tkvm\tbenchmark\tSSH+HOST+PUBLIC+KEY+BASE64+ENCODED==",
		"nix@scratchy.labs.cs.uu.nl Arch1,Arch2 - - - SupportedFeature1,SupportedFeature2 MandatoryFeature1,MandatoryFeature2",
		"a - - eight", "a - - -1", "a - - 8 three", "a - - 8 -3",
		"a.example ;  ", "a.example\n  # comment\n", "a #x;  @/nonexistent/file",
		"a - - +4 0", "a - - 4294967296", "a - - 4294967295 4294967295", "a - - 4 1 - - QUJD=_",
		"a x,y,x,, - 2 - b,a,b c,c", "a ,, - 2", "a - - - - - - - extra", ";\n;a;\nb # c ; d",
		"@" + valid, "@" + bad, "@" + nested, "@ " + nested + " \t", "- x86_64-linux",
	}
	for _, spec := range specs {
		t.Run(fmt.Sprintf("%q", spec), func(t *testing.T) {
			cmd := exec.Command("nix-build", drv, "--no-out-link", "--option", "substituters", "", "--builders", spec)
			b, _ := cmd.CombinedOutput()
			nixErr, nixList := nixHookReport(string(b))
			ms, err := ParseMachines(spec, ParseOptions{ThisSystem: system})
			switch {
			case nixErr != "":
				if err == nil {
					t.Fatalf("Nix says %q; ParseMachines accepted it", nixErr)
				}
				// 2.8 renders the bad base64 byte as '' (a formatting bug).
				if got := err.Error(); got != nixErr && !strings.Contains(nixErr, "Base64") {
					t.Errorf("error\n nix: %s\n got: %s", nixErr, got)
				}
			case nixList == nil:
				t.Fatalf("no machine listing or error in Nix's output:\n%s", b)
			default:
				if err != nil {
					t.Fatalf("Nix accepted it; ParseMachines: %v", err)
				}
				var got []string
				for _, m := range ms {
					got = append(got, fmt.Sprintf("(%s, %d, %s, %s)", strings.Join(m.Systems, ", "), m.MaxJobs,
						strings.Join(m.SupportedFeatures, ", "), strings.Join(m.MandatoryFeatures, ", ")))
				}
				if strings.Join(got, "\n") != strings.Join(nixList, "\n") {
					t.Errorf("machines\n nix: %q\n got: %q", nixList, got)
				}
			}
		})
	}
}

// nixHookReport extracts from nix-build's output the hook's parse error, or
// the machine lines of its "Failed to find a machine" warning.
func nixHookReport(out string) (parseErr string, machines []string) {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if s, ok := strings.CutPrefix(l, "error: bad machine specification"); ok {
			return "bad machine specification" + s, nil
		}
		if strings.HasPrefix(l, "(systems, maxjobs, supportedFeatures, mandatoryFeatures)") {
			machines = []string{}
			for _, m := range lines[i+1:] {
				if !strings.HasPrefix(m, "(") {
					break
				}
				machines = append(machines, m)
			}
			return "", machines
		}
	}
	return "", nil
}

// nixSystem asks Nix for its `system` setting, the default of the systems
// column.
func nixSystem(t *testing.T) string {
	out, err := exec.Command("nix", "--extra-experimental-features", "nix-command", "show-config").Output()
	if err != nil {
		t.Fatalf("nix show-config: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "system = "); ok {
			return v
		}
	}
	t.Fatal("nix show-config has no system")
	return ""
}

// TestLocalMachineFromNixShowConfig reads the settings the real Nix uses
// (`nix show-config` prints nix.conf syntax) and checks that LocalMachine
// describes the local machine as Nix's own local-build rule sees it: the
// system plus extra-platforms, the system features, max-jobs.
func TestLocalMachineFromNixShowConfig(t *testing.T) {
	storetest.RequireNix(t)
	out, err := exec.Command("nix", "--extra-experimental-features", "nix-command", "show-config").Output()
	if err != nil {
		t.Fatalf("nix show-config: %v", err)
	}
	conf, err := ParseNixConf(strings.NewReader(string(out)), ConfOptions{Path: "show-config"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := LocalMachine(conf, LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Systems[0] != conf["system"] {
		t.Errorf("system %q, nix says %q", m.Systems[0], conf["system"])
	}
	for _, p := range strings.Fields(conf["extra-platforms"]) {
		if !CanBuild(&m, MustPlatform(p)) {
			t.Errorf("extra platform %s not buildable locally", p)
		}
	}
	if got, want := strings.Join(m.SupportedFeatures, " "), strings.Join(sortedSet(strings.Fields(conf["system-features"])), " "); got != want {
		t.Errorf("features %q, nix says %q", got, want)
	}
	if jobs := conf["max-jobs"]; jobs != "auto" && fmt.Sprint(m.MaxJobs) != jobs {
		t.Errorf("max-jobs %d, nix says %s", m.MaxJobs, jobs)
	}
	// The builders setting is ours to parse too.
	if _, err := ParseMachines(conf["builders"], ParseOptions{ThisSystem: conf["system"]}); err != nil {
		t.Errorf("builders %q: %v", conf["builders"], err)
	}
}

// TestMatchingAgainstNix gives the real Nix 2.8 build hook derivations with
// required features and machines it cannot reach (ssh to port 1). The hook
// tries every machine it finds capable, best first ("cannot build on
// '<uri>'" each), so its attempts are the capable set in Nix's order of
// preference; with every load 0 that is speed factor, highest first, then
// file order. CanBuild must pick the same machines. (A capable machine
// with max-jobs 0 is left out: 2.8's hook answers "postpone" for it
// forever, a hang; CanBuild refuses such a machine instead.)
func TestMatchingAgainstNix(t *testing.T) {
	storetest.RequireTrusted(t) // the daemon takes --builders from trusted users only
	dir := t.TempDir()
	expr := filepath.Join(dir, "match.nix")
	if err := os.WriteFile(expr, []byte(`{ feats }: derivation { name = "nbuild-sched-match"; system = "nbuild-sys"; builder = "/bin/sh"; args = ["-c" "echo > $out"]; requiredSystemFeatures = feats; }`), 0o644); err != nil {
		t.Fatal(err)
	}
	machines := []string{
		"ssh://plain@127.0.0.1 nbuild-sys - 1 1",
		"ssh://kvm@127.0.0.1 nbuild-sys,other - 1 2 kvm",
		"ssh://kvmbig@127.0.0.1 nbuild-sys - 2 3 kvm,big-parallel",
		"ssh://mandbig@127.0.0.1 nbuild-sys - 1 1 kvm big-parallel",
		"ssh://mandboth@127.0.0.1 nbuild-sys - 1 5 - kvm,big-parallel",
		"ssh://othersys@127.0.0.1 other - 1 9 kvm,big-parallel",
	}
	spec := strings.Join(machines, "\n")
	parsed, err := ParseMachines(spec, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, feats := range [][]string{nil, {"kvm"}, {"big-parallel"}, {"kvm", "big-parallel"}, {"benchmark"}, {"big-parallel", "kvm", "kvm"}} {
		t.Run(fmt.Sprint(feats), func(t *testing.T) {
			arg := "["
			for _, f := range feats {
				arg += fmt.Sprintf("%q ", f)
			}
			arg += "]"
			out, err := exec.Command("nix-instantiate", "--no-gc-warning", expr, "--arg", "feats", arg).Output()
			if err != nil {
				t.Fatalf("nix-instantiate: %v", err)
			}
			cmd := exec.Command("nix-build", strings.TrimSpace(string(out)), "--no-out-link", "--option", "substituters", "", "--builders", spec)
			cmd.Env = append(os.Environ(), "NIX_SSHOPTS=-p 1 -o BatchMode=yes -o ConnectTimeout=5")
			b, _ := cmd.CombinedOutput()
			var tried []string
			for _, l := range strings.Split(string(b), "\n") {
				if rest, ok := strings.CutPrefix(l, "cannot build on '"); ok {
					tried = append(tried, rest[:strings.IndexByte(rest, '\'')])
				}
			}
			p := MustPlatform("nbuild-sys", feats...)
			var capable []Machine
			for _, m := range parsed {
				if CanBuild(&m, p) {
					capable = append(capable, m)
				}
			}
			sort.SliceStable(capable, func(i, j int) bool { return capable[i].SpeedFactor > capable[j].SpeedFactor })
			var want []string
			for _, m := range capable {
				want = append(want, m.URI)
			}
			t.Logf("Nix tried %q", tried)
			if strings.Join(tried, " ") != strings.Join(want, " ") {
				t.Errorf("Nix tried %q\nCanBuild picks %q\nnix-build said:\n%s", tried, want, b)
			}
		})
	}
}
