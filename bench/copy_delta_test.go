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
	env := fmt.Sprintf("NIX_SSHOPTS=%q", h.SSHOptsPort(relay.Port)+" -o HostName=127.0.0.1")
	nix := func(root string) string { return fmt.Sprintf("%s nix-copy-closure --to root@board %s", env, root) }
	nb := func(root, extra string) string {
		return fmt.Sprintf("%s %s copy %s --to root@board %s", env, nbuild, extra, root)
	}
	del := func(paths []string) string {
		return in + "nix-store --delete " + strings.Join(paths, " ") + " && sync"
	}
	sh := func(c string) string {
		b, err := exec.Command("bash", "-c", c).CombinedOutput()
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
	measure("nbuild copy, mass rebuild, binary sent", nb(rootB, "-v -Q"), del(newB)+" && "+in+"rm -rf /root/.cache/nbuild")
	measure("nbuild copy, mass rebuild, binary cached", nb(rootB, "-v -Q"), del(newB))
	measure("nix-copy-closure, small update", nix(rootT), "true")
	measure("nbuild copy, small update", nb(rootT, "-v -Q"), del(newT))
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
		{"shaped-mass-rebuild", 3, del(newB), []string{nix(rootB), nb(rootB, "-Q")}},
		{"shaped-small-update", 5, del(newT), []string{nix(rootT), nb(rootT, "-Q")}},
	} {
		args := []string{"-N", "--runs", fmt.Sprint(c.runs), "--export-markdown", filepath.Join(out, c.name+".md"),
			"--export-json", filepath.Join(out, c.name+".json"), "--prepare", "bash -c '" + c.prepare + " >/dev/null 2>&1'"}
		for _, cmd := range c.cmds {
			args = append(args, "bash -c '"+cmd+"'")
		}
		hf := exec.Command("hyperfine", args...)
		hf.Stdout, hf.Stderr = os.Stdout, os.Stderr
		t.Logf("hyperfine %s", strings.Join(args, " "))
		if err := hf.Run(); err != nil {
			t.Fatalf("hyperfine %s: %v", c.name, err)
		}
	}
	h.MustRun("nix-store", "--verify-path", rootB)
	h.MustRun("nix-store", "--verify-path", rootT)
}
