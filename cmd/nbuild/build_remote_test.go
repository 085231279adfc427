package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

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
	// host-0's marker is a FIFO: opening it for reading returns when a
	// build on host-0 opens it to write "started", so host-0 is killed
	// the moment it builds, with no polling.
	fifo := marker + "0"
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	var runDone atomic.Bool
	killed := make(chan bool, 1)
	go func() {
		f, err := os.Open(fifo)
		if err != nil {
			killed <- false
			return
		}
		io.Copy(io.Discard, f)
		f.Close()
		if runDone.Load() { // released by the test below: host-0 never built
			killed <- false
			return
		}
		hosts[0].Kill()
		killed <- true
	}()
	// -j 0: nothing builds locally, so the jobs must use the builders.
	_, errOut, code := runWithEnv(t, getenv, buildArgs(t, "-j", "0", "--builders", builders, top)...)
	runDone.Store(true)
	if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		w.Close() // a reader was still waiting: let it go
	}
	if !<-killed {
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

// TestBuildRemoteKeepsIntermediates checks that a remote build's outputs
// come back only when needed. A chain built on host-0 leaves its
// intermediates there (not in the local store); the root comes back with
// its runtime closure. An output made on host-0 for a build on host-1
// goes through the local store (builder → local → builder, as the
// scheduler's transfer model assumes), and one for a local build is
// fetched before it.
func TestBuildRemoteKeepsIntermediates(t *testing.T) {
	getenv, hosts := remoteHosts(t, "system-features = f0\n", "system-features = f1\n")
	dir := t.TempDir()
	expr := `let mk = name: feature: script: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh";
    salt = "` + salt(t) + `"; requiredSystemFeatures = [ feature ]; args = [ "-c" script ]; };
  a0 = mk "a0" "f0" "/bin/echo a0 > $out";
  b0 = mk "b0" "f0" "/bin/cat ${a0} > $out; /bin/echo b0 >> $out";
  r0 = mk "r0" "f0" "/bin/echo r0 > $out";
  x = mk "x" "f0" "/bin/echo x > $out";
  z = mk "z" "f0" "/bin/echo z > $out";
in {
  top0 = mk "top0" "f0" "/bin/cat ${b0} > $out";     # no reference to b0
  ref0 = mk "ref0" "f0" "/bin/echo ${r0} > $out";    # refers to r0 at run time
  y = mk "y" "f1" "/bin/cat ${x} > $out";            # on host-1, input from host-0
  w = mk "w" "benchmark" "/bin/cat ${z} > $out";     # local only, input from host-0
  inherit a0 b0 r0 x z;
}`
	f := filepath.Join(dir, "keep.nix")
	if err := os.WriteFile(f, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	drvs := instantiateLocal(t, f, "top0", "ref0", "y", "w", "a0", "b0", "r0", "x", "z")
	out := map[string]string{}
	for i, name := range []string{"top0", "ref0", "y", "w", "a0", "b0", "r0", "x", "z"} {
		out[name] = nixLocal(t, "-q", "--outputs", drvs[i])
	}
	builders := "ssh-ng://root@host-0 x86_64-linux - 2 1 f0;ssh-ng://root@host-1 x86_64-linux - 2 1 f1"
	_, errOut, code := runWithEnv(t, getenv, buildArgs(t, "--builders", builders, drvs[0], drvs[1], drvs[2], drvs[3])...)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	validLocal := func(p string) bool {
		return exec.Command("nix-store", "--option", "substituters", "", "--check-validity", p).Run() == nil
	}
	for _, name := range []string{"top0", "ref0", "r0", "y", "x", "w", "z"} {
		if !validLocal(out[name]) {
			t.Errorf("%s (%s) is not valid locally", name, out[name])
		}
	}
	for _, name := range []string{"a0", "b0"} {
		if validLocal(out[name]) {
			t.Errorf("intermediate %s was copied back to the local store", name)
		}
		if _, err := hosts[0].Run("nix-store", "--verify-path", out[name]); err != nil {
			t.Errorf("intermediate %s is not valid on host-0: %v", name, err)
		}
	}
	if _, err := hosts[1].Run("nix-store", "--verify-path", out["x"]); err != nil {
		t.Errorf("x was not copied to host-1: %v", err)
	}
	if got := nixLocal(t, "--query", "--references", out["ref0"]); got != out["r0"] {
		t.Errorf("ref0 references %q, want %q", got, out["r0"])
	}
	for _, root := range []string{"top0", "ref0", "y", "w"} {
		for _, p := range strings.Fields(nixLocal(t, "-qR", out[root])) {
			nixLocal(t, "--verify-path", p)
		}
	}
	if b, err := os.ReadFile(out["top0"]); err != nil || string(b) != "a0\nb0\n" {
		t.Errorf("top0 = %q, %v", b, err)
	}
}

// TestBuildRemoteUntrusted builds on a host whose nix-daemon does not
// trust root. Root reaching `nix-daemon --stdio` over ssh is trusted
// blindly when the session opens the store itself (Nix 2.8), so the
// builder URI says remote-store=daemon (nix-daemon --stdio --store
// daemon): the session then forwards to the host's daemon, which judges
// root by trusted-users. (store = daemon in the host's nix.conf would
// make its daemon connect to itself and hang.) Nix 2.8 (protocol 1.34) does not
// send the trust status; the first unsigned copy is refused with "lacks a
// valid signature", and nbuild must say what to do instead of retrying
// the builder as lost.
func TestBuildRemoteUntrusted(t *testing.T) {
	getenv, _ := remoteHosts(t, "trusted-users = nobody\n")
	dir := t.TempDir()
	expr := `let src = builtins.toFile "input-` + salt(t) + `" "x";
  mk = name: deps: derivation { inherit name deps; system = "x86_64-linux"; builder = "/bin/sh";
    salt = "` + salt(t) + `"; args = [ "-c" "/bin/cat ${src} > $out" ]; };
  dep = mk "dep" [];
in { caOnly = mk "ca-only" []; inherit dep; withDep = mk "with-dep" [ dep ]; }`
	f := filepath.Join(dir, "untrusted.nix")
	if err := os.WriteFile(f, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	drvs := instantiateLocal(t, f, "caOnly", "dep", "withDep")
	// dep is built here, so with-dep needs an input-addressed input
	// copied: the unsigned copy is what the daemon refuses then.
	if b, err := exec.Command("nix-store", "--option", "substituters", "", "-r", drvs[1]).CombinedOutput(); err != nil {
		t.Fatalf("nix-store -r: %v\n%s", err, b)
	}
	builders := "ssh-ng://root@host-0?remote-store=daemon x86_64-linux - 1 1 -"
	for _, d := range []string{drvs[0], drvs[2]} {
		_, errOut, code := runWithEnv(t, getenv, buildArgs(t, "-j", "0", "--builders", builders, d)...)
		if code == 0 {
			t.Fatalf("built %s on a builder that does not trust root:\n%s", d, errOut)
		}
		if !strings.Contains(errOut, "user root is not a trusted user of its nix-daemon") {
			t.Errorf("%s: the error does not say root is untrusted:\n%s", d, errOut)
		}
		if strings.Contains(errOut, "trying elsewhere") {
			t.Errorf("%s: an untrusted builder was treated as lost:\n%s", d, errOut)
		}
		t.Logf("%s:\n%s", d, errOut)
	}
}
