package bench

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/copy"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/ssh"
	"github.com/nbuild/nbuild/store/testhost"
)

// TestCopyTimeline copies the benchmark closure over the shaped link and
// samples, every 250 ms, the bytes the relay passed, how many paths the
// remote store holds, and the CPU and state of the processes on both
// ends. It shows where a copy's pipe idles. Same gate as TestCopyVsNix;
// NBUILD_BENCH_COPY_ARGS adds flags to nbuild copy,
// NBUILD_BENCH_COPY_LINK=loopback bypasses the relay,
// NBUILD_BENCH_COPY_TOOL=nix-copy-closure runs that instead.
func TestCopyTimeline(t *testing.T) {
	_, nbuild, root := copyBenchSetup(t)
	settle := os.Getenv("NBUILD_BENCH_COPY_SETTLE") // seconds to wait after emptying the remote store
	if settle == "" {
		settle = "0"
	}
	h := testhost.New(t, testhost.Options{})
	relay := testhost.NewRelay(t, h.HostAddr(), testhost.RelayOptions{RateBytesPerSec: 12_500_000, Delay: 10 * time.Millisecond})
	wipe := fmt.Sprintf("nsenter --target %s --mount -- nix-store --gc >/dev/null 2>&1 && sync && sleep %s", hostPid(t, h), settle)
	for run := range 3 {
		if run > 0 || settle != "0" {
			if b, err := exec.Command("bash", "-c", wipe).CombinedOutput(); err != nil {
				t.Fatalf("wipe: %v\n%s", err, b)
			}
		}
		args := append([]string{"copy", "-Q"}, strings.Fields(os.Getenv("NBUILD_BENCH_COPY_ARGS"))...)
		// Through the relay the host is "board", as in TestCopyVsNix.
		addr, opts := "root@board", h.SSHOptsPort(relay.Port)+" -o HostName=127.0.0.1"
		if os.Getenv("NBUILD_BENCH_COPY_LINK") == "loopback" {
			addr, opts = h.Addr, h.SSHOptsPort(h.Port) // straight to sshd
		}
		cmd := exec.Command(nbuild, append(args, "--to", addr, root)...)
		if os.Getenv("NBUILD_BENCH_COPY_TOOL") == "nix-copy-closure" {
			cmd = exec.Command("nix-copy-closure", "--to", addr, root)
		}
		cmd.Env = append(os.Environ(), "NIX_SSHOPTS="+opts)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		tick := time.NewTicker(250 * time.Millisecond)
		last := relay.Relayed()
		prevCPU := map[string]int64{}
		t.Logf("run %d: t(s) MB/s-on-link remote-paths  procs(state cpu%%)", run)
	loop:
		for {
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("copy: %v\n%s", err, stderr.String())
				}
				break loop
			case <-tick.C:
				n := relay.Relayed()
				ents, _ := os.ReadDir(h.StoreDir())
				t.Logf("%5.2f %6.2f %3d  %s", time.Since(start).Seconds(), float64(n-last)/0.25/1e6, len(ents), procStates(prevCPU))
				last = n
			}
		}
		tick.Stop()
		t.Logf("run %d: %.2f s, %d bytes relayed; stderr: %s", run, time.Since(start).Seconds(), relay.Relayed(), stderr.String())
	}
}

// procStates reports state and CPU share since the last call of the
// processes a copy runs: nix-daemon, zstd, xz, sshd, ssh, nbuild.
func procStates(prev map[string]int64) string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		comm, err := os.ReadFile(d + "/comm")
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(comm))
		switch name {
		case "nix-daemon", "zstd", "xz", "sshd", "ssh", "nbuild":
		default:
			continue
		}
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		key := filepath.Base(d)
		cpu := ut + st
		delta := cpu - prev[key]
		_, seen := prev[key]
		prev[key] = cpu
		if !seen {
			delta = 0
		}
		if delta == 0 && f[0] == "S" && name == "sshd" {
			continue
		}
		out = append(out, fmt.Sprintf("%s(%s %d)", name, f[0], delta*100/25))
	}
	return strings.Join(out, " ")
}

// TestCopyFromStream measures what NarsFromPaths saves over a NarFromPath
// per path when pulling the benchmark closure from a host over a link with
// 10 ms each way and no rate limit (round trips, not bandwidth). Same gate.
func TestCopyFromStream(t *testing.T) {
	_, nbuild, root := copyBenchSetup(t)
	h := testhost.New(t, testhost.Options{})
	fill := exec.Command(nbuild, "copy", "-Q", "--to", h.Addr, root)
	fill.Env = append(os.Environ(), "NIX_SSHOPTS="+h.SSHOpts())
	if b, err := fill.CombinedOutput(); err != nil {
		t.Fatalf("filling the host: %v\n%s", err, b)
	}
	relay := testhost.NewRelay(t, h.HostAddr(), testhost.RelayOptions{Delay: 10 * time.Millisecond})
	ctx := t.Context()
	sc, err := ssh.Dial(ctx, h.Addr, []string{"nix-daemon", "--stdio"}, ssh.Options{Getenv: h.GetenvPort(relay.Port)})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	c, err := daemon.NewConn(ctx, sc, daemon.Options{SkipSetOptions: true})
	if err != nil {
		t.Fatal(err)
	}
	infos, err := copy.Closure(ctx, c, []store.Path{store.MustParsePath(root)})
	if err != nil {
		t.Fatal(err)
	}
	paths := make([]store.Path, len(infos))
	for i, info := range infos {
		paths[i] = info.Path
	}
	for round := range 2 {
		start := time.Now()
		var n int64
		for _, p := range paths {
			w := &countingDiscard{}
			if err := c.NarFromPath(ctx, p, w); err != nil {
				t.Fatal(err)
			}
			n += w.n
		}
		one := time.Since(start)
		start = time.Now()
		var m int64
		if err := c.NarsFromPaths(ctx, paths, func(_ int, r io.Reader) error {
			k, err := io.Copy(io.Discard, r)
			m += k
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d, %d paths, %d bytes: NarFromPath each %v, NarsFromPaths %v (%d bytes)", round, len(paths), n, one, time.Since(start), m)
	}
}

type countingDiscard struct{ n int64 }

func (c *countingDiscard) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
