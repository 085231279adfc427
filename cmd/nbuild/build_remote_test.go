package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store/testhost"
)

// remoteHosts starts one test host per nix.conf and writes an ssh config
// that names them host-0, host-1, ...: Nix's machine URIs carry no port,
// so users reach such builders through ssh configuration too. It returns
// the getenv to run nbuild with (NIX_SSHOPTS=-F config) and the hosts.
func remoteHosts(t *testing.T, confs ...string) (func(string) string, []*testhost.Host) {
	t.Helper()
	var hosts []*testhost.Host
	var cfg strings.Builder
	for i, conf := range confs {
		h := testhost.New(t, testhost.Options{Daemon: true, NixConf: conf})
		hosts = append(hosts, h)
		fmt.Fprintf(&cfg, "Host host-%d\n  HostName 127.0.0.1\n  Port %d\n  IdentityFile %s\n  IdentitiesOnly yes\n"+
			"  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  HostKeyAlias %s\n  StrictHostKeyChecking yes\n"+
			"  CheckHostIP no\n  BatchMode yes\n  ControlMaster no\n  ControlPath none\n  ConnectTimeout 20\n",
			i, h.Port, h.Key, h.KnownHosts, testhost.HostKeyAlias)
		// A marker only this host's builds can read: its /nix is its own.
		if err := os.WriteFile(filepath.Join(h.Dir, "nix", "var", "nbuild-test-host"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(file, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(k string) string {
		if k == "NIX_SSHOPTS" {
			return "-F " + file
		}
		return os.Getenv(k)
	}, hosts
}

// runWithEnv is run with a getenv of the test's choosing.
func runWithEnv(t *testing.T, getenv func(string) string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr strings.Builder
	env := &cmdEnv{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: getenv}
	code := runMain(context.Background(), env, args)
	return stdout.String(), stderr.String(), code
}

// TestBuildRemote builds the plan graph on the local daemon and two remote
// test hosts: "fast" derivations can only go to host-0 (the only builder
// with the feature, and its daemon is configured with it), the
// aarch64-linux one only to host-1 (whose daemon has it as an extra
// platform). Every output must end valid locally, identical to what
// nix-build makes where nix-build can build it.
func TestBuildRemote(t *testing.T) {
	getenv, hosts := remoteHosts(t,
		"system-features = fast big-parallel\n",
		"extra-platforms = aarch64-linux\n")
	plan := saltedPlan(t, salt(t))
	drvs := instantiateLocal(t, plan, "app", "tests", "other", "fast")
	builders := "ssh-ng://root@host-0 x86_64-linux - 2 1 fast,big-parallel;ssh-ng://root@host-1 aarch64-linux,x86_64-linux - 2 1 -"
	out, errOut, code := runWithEnv(t, getenv, buildArgs(t, "--builders", builders, drvs[0], drvs[1], drvs[2], drvs[3])...)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	for _, d := range drvs {
		for _, o := range strings.Fields(nixLocal(t, "-q", "--outputs", d)) {
			if !strings.Contains(out, o) {
				t.Errorf("root output %s not printed", o)
			}
			nixLocal(t, "--verify-path", o)
		}
	}
	onHost := func(h *testhost.Host, drv string) bool {
		o := nixLocal(t, "-q", "--outputs", drv)
		_, err := h.Run("nix-store", "--verify-path", o)
		return err == nil
	}
	if !onHost(hosts[0], drvs[1]) || !onHost(hosts[0], drvs[3]) {
		t.Errorf("the fast derivations were not built on host-0")
	}
	if onHost(hosts[1], drvs[1]) || onHost(hosts[1], drvs[3]) {
		t.Errorf("host-1 built a fast derivation it has no feature for")
	}
	if !onHost(hosts[1], drvs[2]) || onHost(hosts[0], drvs[2]) {
		t.Errorf("the aarch64-linux derivation was not built on host-1 alone")
	}
	// Outputs equal nix-build's (content only: paths differ by salt), for
	// the root this machine's own daemon can build.
	ref := saltedPlan(t, salt(t)+"-ref")
	if b, err := exec.Command("nix-build", "--no-out-link", "--option", "substituters", "", ref, "-A", "app").CombinedOutput(); err != nil {
		t.Fatalf("nix-build: %v\n%s", err, b)
	}
	refDrv := instantiateLocal(t, ref, "app")[0]
	if got, want := nixLocal(t, "-q", "--hash", nixLocal(t, "-q", "--outputs", drvs[0])), nixLocal(t, "-q", "--hash", nixLocal(t, "-q", "--outputs", refDrv)); got != want {
		t.Errorf("app output %s, nix-build %s", got, want)
	}
}

// TestBuildRemoteHostDies kills a builder while it builds: its job is
// scheduled again on the other builder and the run succeeds.
func TestBuildRemoteHostDies(t *testing.T) {
	getenv, hosts := remoteHosts(t, "", "")
	// Builds run as nixbld users: the marker directory (and the ones
	// above it) must let them in, which t.TempDir's 0700 parent does not.
	dir, err := os.MkdirTemp("", "nbuild-marker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "started-")
	expr := `let mk = name: deps: derivation { inherit name deps; system = "x86_64-linux"; builder = "/bin/sh"; salt = "` + salt(t) + `";
  args = ["-c" "/bin/echo started > ` + marker + `$(/bin/cat /nix/var/nbuild-test-host 2>/dev/null || echo local); /bin/sleep 4; /bin/echo ${name} > $out"]; };
  a = mk "slow-a" []; b = mk "slow-b" [];
in { top = mk "top" [ a b ]; }`
	f := filepath.Join(dir, "slow.nix")
	if err := os.WriteFile(f, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	top := instantiateLocal(t, f, "top")[0]
	builders := "ssh-ng://root@host-0 x86_64-linux - 1 1 -;ssh-ng://root@host-1 x86_64-linux - 1 1 -"
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			if _, err := os.Stat(marker + "0"); err == nil {
				hosts[0].Kill()
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	// -j 0: nothing builds locally, so the jobs must use the builders.
	_, errOut, code := runWithEnv(t, getenv, buildArgs(t, "-j", "0", "--builders", builders, top)...)
	<-killed
	if _, err := os.Stat(marker + "0"); err != nil {
		t.Fatalf("no build ever started on host-0; the test proves nothing (exit %d)\n%s", code, errOut)
	}
	if code != 0 {
		t.Fatalf("exit %d after host-0 died\n%s", code, errOut)
	}
	for _, o := range strings.Fields(nixLocal(t, "-qR", nixLocal(t, "-q", "--outputs", top))) {
		nixLocal(t, "--verify-path", o)
	}
	if _, err := hosts[1].Run("nix-store", "--verify-path", nixLocal(t, "-q", "--outputs", top)); err != nil {
		t.Errorf("top was not built on the surviving host-1: %v", err)
	}
}
