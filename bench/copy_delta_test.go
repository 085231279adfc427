package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store/testhost"
)

// TestCopyDeltaVsNix is the whole-process benchmark of updates: the host
// holds generation A of the benchmark closure (bench/copy/closure.nix,
// 101 paths, ~446 MB of NAR) and receives B, a mass rebuild of it (every
// path new, files equal but for the store paths they name), or T, a small
// update (one file of bench-go-bin changed: that path and the root are
// new). nix-copy-closure and nbuild copy (a delta: only what the host
// cannot make from A goes over the link) run in the same hyperfine run
// over the shaped link (100 Mbit/s, 10 ms each way); before each run the
// update's new paths are deleted from the host. The bytes each command
// puts on the link, and nbuild's own account (-v), are measured in one
// extra run each and written to deltas.txt. Same gate as TestCopyVsNix:
//
//	NBUILD_BENCH_COPY=1 NBUILD_BENCH_COPY_OUT=/tmp/copy go test -run TestCopyDeltaVsNix -v -timeout 60m ./bench
func TestCopyDeltaVsNix(t *testing.T) {
	out, nbuild, rootA := copyBenchSetup(t)
	build := func(args ...string) string {
		b, err := exec.Command("nix-build", append([]string{"--option", "substituters", "", "--no-out-link", "copy/closure.nix"}, args...)...).Output()
		if err != nil {
			t.Fatalf("nix-build %v: %v", args, err)
		}
		return strings.TrimSpace(string(b))
	}
	rootB := build("--argstr", "salt", "delta-b")
	rootT := build("--argstr", "tweak", "small-update")
	closure := func(root string) []string {
		b, err := exec.Command("nix-store", "-qR", root).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(string(b))
	}
	a := closure(rootA)
	newPaths := func(root string) []string {
		var out []string
		for _, p := range closure(root) {
			if !slices.Contains(a, p) {
				out = append(out, p)
			}
		}
		slices.Reverse(out) // referrers first, for nix-store --delete
		return out
	}
	newB, newT := newPaths(rootB), newPaths(rootT)
	t.Logf("mass rebuild: %d new paths; small update: %d new paths", len(newB), len(newT))

	h := testhost.New(t, testhost.Options{})
	relay := testhost.NewRelay(t, h.HostAddr(), testhost.RelayOptions{RateBytesPerSec: 12_500_000, Delay: 10 * time.Millisecond})
	in := fmt.Sprintf("nsenter --target %s --mount -- ", hostPid(t, h))
	// The commands reach the host as "root@board" through the relay: ssh's
	// options come from the environment, so the command lines stay short.
	env := append(os.Environ(), "NIX_SSHOPTS="+h.SSHOptsPort(relay.Port)+" -o HostName=127.0.0.1")
	nix := func(root string) string { return "nix-copy-closure --to root@board " + root }
	nb := func(root, extra string) string {
		return fmt.Sprintf("%s copy %s --to root@board %s", nbuild, extra, root)
	}
	// Deleting an update's new paths from the host: a script per update.
	del := func(name string, paths []string) string {
		script := filepath.Join(out, "delete-"+name+".sh")
		body := "#!/bin/sh\n" + in + "nix-store --delete " + strings.Join(paths, " ") + " && sync\n"
		if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return script
	}
	delB, delT := del("mass-rebuild", newB), del("small-update", newT)
	sh := func(c string) string {
		cmd := exec.Command("bash", "-c", c)
		cmd.Env = env
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", c, err, b)
		}
		return string(b)
	}
	// Generation A, over loopback.
	sh(fmt.Sprintf("NIX_SSHOPTS=%q %s copy -Q --to %s %s", h.SSHOpts(), nbuild, h.Addr, rootA))

	// One run each, counting the link's bytes: nix-copy-closure, then
	// nbuild's first delta (it sends itself to the host), then again with
	// the binary in the host's cache.
	var report strings.Builder
	measure := func(name, cmd, prepare string) {
		sh(prepare)
		before := relay.Relayed()
		start := time.Now()
		o := sh(cmd)
		fmt.Fprintf(&report, "%s: %.1f s, %d bytes relayed\n%s\n", name, time.Since(start).Seconds(), relay.Relayed()-before, o)
	}
	measure("nix-copy-closure, mass rebuild", nix(rootB), "true")
	// The first delta sends nbuild to the host and indexes A's files; the
	// next finds both in the host's caches.
	measure("nbuild copy, mass rebuild, first delta (binary sent, A indexed)", nb(rootB, "-v -Q"), delB+" && "+in+"rm -rf /root/.cache/nbuild")
	measure("nbuild copy, mass rebuild, caches warm", nb(rootB, "-v -Q"), delB)
	measure("nix-copy-closure, small update", nix(rootT), "true")
	measure("nbuild copy, small update", nb(rootT, "-v -Q"), delT)
	if err := os.WriteFile(filepath.Join(out, "deltas.txt"), []byte(report.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log(report.String())

	for _, c := range []struct {
		name    string
		runs    int
		prepare string
		cmds    []string
	}{
		{"shaped-mass-rebuild", 3, delB, []string{nix(rootB), nb(rootB, "-Q")}},
		{"shaped-small-update", 5, delT, []string{nix(rootT), nb(rootT, "-Q")}},
	} {
		args := []string{"-N", "--runs", fmt.Sprint(c.runs), "--export-markdown", filepath.Join(out, c.name+".md"),
			"--export-json", filepath.Join(out, c.name+".json"), "--prepare", c.prepare}
		args = append(args, c.cmds...)
		hf := exec.Command("hyperfine", args...)
		hf.Env = env
		hf.Stdout, hf.Stderr = os.Stdout, os.Stderr
		t.Logf("hyperfine %s", strings.Join(args, " "))
		if err := hf.Run(); err != nil {
			t.Fatalf("hyperfine %s: %v", c.name, err)
		}
	}
	h.MustRun("nix-store", "--verify-path", rootB)
	h.MustRun("nix-store", "--verify-path", rootT)
}
