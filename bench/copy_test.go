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

	"github.com/nbuild/nbuild/store/storetest"
	"github.com/nbuild/nbuild/store/testhost"
)

// TestCopyVsNix is the whole-process benchmark of `nbuild copy` against
// nix-copy-closure and `nix copy --to file://` on the same closure in the
// same run (bench/copy/closure.nix: 101 paths, ~446 MB of NAR). It starts
// a real test host and a shaped relay (100 Mbit/s, 10 ms each way), runs
// hyperfine, and writes its markdown tables to $NBUILD_BENCH_COPY_OUT (or
// the test's temp dir). It takes several minutes, so it runs only with
// NBUILD_BENCH_COPY=1:
//
//	NBUILD_BENCH_COPY=1 NBUILD_BENCH_COPY_OUT=/tmp/copy go test -run TestCopyVsNix -v -timeout 60m ./bench
//
// NBUILD_BENCH_COPY_CASES=shaped-cold,loopback-cold runs only those tables.
func TestCopyVsNix(t *testing.T) {
	out, nbuild, root := copyBenchSetup(t)

	h := testhost.New(t, testhost.Options{})
	relay := testhost.NewRelay(t, h.HostAddr(), testhost.RelayOptions{RateBytesPerSec: 12_500_000, Delay: 10 * time.Millisecond})
	// Every cold run starts from an empty remote store.
	// The deletions and the previous run's dirty pages are flushed before
	// the next run, so that no run pays for the one before it.
	wipe := fmt.Sprintf("nsenter --target %s --mount -- nix-store --gc && sync", hostPid(t, h))
	// Over the shaped link the host is "board", as a real board is named
	// (ssh's HostName maps it to the relay); over loopback it is
	// 127.0.0.1, this machine, where nbuild's auto sends uncompressed.
	env := func(port int) (string, string) {
		if port == relay.Port {
			return fmt.Sprintf("NIX_SSHOPTS=%q", h.SSHOptsPort(port)+" -o HostName=127.0.0.1"), "root@board"
		}
		return fmt.Sprintf("NIX_SSHOPTS=%q", h.SSHOptsPort(port)), h.Addr
	}
	nix := func(port int, extra string) string {
		e, addr := env(port)
		return fmt.Sprintf("%s nix-copy-closure %s --to %s %s", e, extra, addr, root)
	}
	nb := func(port int, extra string) string {
		e, addr := env(port)
		return fmt.Sprintf("%s %s copy -Q %s --to %s %s", e, nbuild, extra, addr, root)
	}
	cases := os.Getenv("NBUILD_BENCH_COPY_CASES") // e.g. "shaped-cold,file-xz"; empty: all
	hf := func(name string, runs int, prepare string, cmds ...string) {
		if cases != "" && !slices.Contains(strings.Split(cases, ","), name) {
			return
		}
		args := []string{"-N", "--runs", fmt.Sprint(runs), "--export-markdown", filepath.Join(out, name+".md"),
			"--export-json", filepath.Join(out, name+".json")}
		if prepare != "" {
			args = append(args, "--prepare", "bash -c '"+prepare+" >/dev/null 2>&1'")
		}
		for _, c := range cmds {
			args = append(args, "bash -c '"+strings.ReplaceAll(c, "'", `'\''`)+"'")
		}
		cmd := exec.Command("hyperfine", args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		t.Logf("hyperfine %s", strings.Join(args, " "))
		if err := cmd.Run(); err != nil {
			t.Fatalf("hyperfine %s: %v", name, err)
		}
	}

	hf("shaped-cold", 2, wipe,
		nix(relay.Port, ""), nix(relay.Port, "--gzip"), nb(relay.Port, ""), nb(relay.Port, "--compress zstd"), nb(relay.Port, "--compress none"))
	hf("loopback-cold", 3, wipe,
		nix(h.Port, ""), nb(h.Port, ""), nb(h.Port, "--compress zstd"), nb(h.Port, "--compress none"))
	if outp, err := exec.Command("bash", "-c", nb(h.Port, "")).CombinedOutput(); err != nil {
		t.Fatalf("filling the host: %v\n%s", err, outp)
	}
	hf("shaped-nothing", 10, "", nix(relay.Port, ""), nb(relay.Port, ""))

	cache := filepath.Join(t.TempDir(), "cache")
	wipeCache := "rm -rf " + cache
	for _, comp := range []string{"zstd", "xz"} {
		runs := 3
		if comp == "xz" {
			runs = 1 // Nix's single-threaded xz takes minutes
		}
		hf("file-"+comp, runs, wipeCache,
			fmt.Sprintf("nix --extra-experimental-features nix-command copy --option substituters '' --to 'file://%s?compression=%s' %s", cache, comp, root),
			fmt.Sprintf("%s copy -Q --to 'file://%s?compression=%s' %s", nbuild, cache, comp, root))
	}
	t.Logf("tables in %s", out)
}

// hostPid finds the pid nsenter needs from a command the host builds.
func hostPid(t *testing.T, h *testhost.Host) string {
	args := h.Command(t.Context()).Args
	for i, a := range args {
		if a == "--target" && i+1 < len(args) {
			return args[i+1]
		}
	}
	t.Fatal("no --target in the host's command")
	return ""
}

// TestCopyFloor measures what bounds a copy on this machine whatever the
// tool: an ssh login over the shaped link (the nothing-to-send floor), and
// the remote registering the closure from a local export file with no
// network at all (the cold floor when the remote writes to this VM's disk).
// Same gate as TestCopyVsNix.
func TestCopyFloor(t *testing.T) {
	out, nbuild, root := copyBenchSetup(t)
	export := filepath.Join(t.TempDir(), "closure.export")
	if b, err := exec.Command("bash", "-c", "nix-store --export $(nix-store -qR "+root+") > "+export).CombinedOutput(); err != nil {
		t.Fatalf("export: %v\n%s", err, b)
	}
	h := testhost.New(t, testhost.Options{})
	relay := testhost.NewRelay(t, h.HostAddr(), testhost.RelayOptions{RateBytesPerSec: 12_500_000, Delay: 10 * time.Millisecond})
	in := fmt.Sprintf("nsenter --target %s --mount -- ", hostPid(t, h))
	sshArgs := strings.Join(h.SSHArgsPort(relay.Port), " ")
	run := func(name string, runs int, prepare string, cmds ...string) {
		args := []string{"-N", "--runs", fmt.Sprint(runs), "--export-markdown", filepath.Join(out, name+".md")}
		if prepare != "" {
			args = append(args, "--prepare", "bash -c '"+prepare+" >/dev/null 2>&1'")
		}
		for _, c := range cmds {
			args = append(args, "bash -c '"+c+"'")
		}
		cmd := exec.Command("hyperfine", args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("hyperfine %s: %v", name, err)
		}
	}
	run("floor-import", 3, in+"nix-store --gc", in+"nix-store --import < "+export)
	if b, err := exec.Command("bash", "-c", in+"nix-store --import < "+export).CombinedOutput(); err != nil {
		t.Fatalf("import: %v\n%s", err, b)
	}
	run("floor-nothing", 10, "",
		"ssh "+sshArgs+" "+h.Addr+" true",
		"ssh "+sshArgs+" "+h.Addr+" nix-store --version",
		fmt.Sprintf("NIX_SSHOPTS=\"%s\" nix-copy-closure --to %s %s", h.SSHOptsPort(relay.Port), h.Addr, root),
		fmt.Sprintf("NIX_SSHOPTS=\"%s\" %s copy -Q --to %s %s", h.SSHOptsPort(relay.Port), nbuild, h.Addr, root))
}

// copyBenchSetup skips unless NBUILD_BENCH_COPY=1 and the tools are here
// (all checked before anything is set up), gives the test hosts their own
// filesystem, and returns the output directory, a freshly built nbuild
// binary and the benchmark closure's root, built by real Nix.
func copyBenchSetup(t *testing.T) (out, nbuild, root string) {
	if os.Getenv("NBUILD_BENCH_COPY") != "1" {
		t.Skip("set NBUILD_BENCH_COPY=1 to run the copy benchmark (minutes)")
	}
	storetest.RequireDaemon(t)
	storetest.RequireRoot(t) // test hosts, and remoteFilesystem's mount
	storetest.RequireTools(t, "hyperfine", "go", "nix-build")
	if os.Getenv("NBUILD_BENCH_COPY_FS") != "root" {
		storetest.RequireTools(t, "truncate", "mkfs.ext4", "mount", "umount")
	}
	remoteFilesystem(t)
	out = os.Getenv("NBUILD_BENCH_COPY_OUT")
	if out == "" {
		out = t.TempDir()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	nbuild = filepath.Join(t.TempDir(), "nbuild")
	if b, err := exec.Command("go", "build", "-o", nbuild, "../cmd/nbuild").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	b, err := exec.Command("nix-build", "--option", "substituters", "", "--no-out-link", "copy/closure.nix").Output()
	if err != nil {
		t.Fatalf("nix-build: %v", err)
	}
	return out, nbuild, strings.TrimSpace(string(b))
}

// remoteFilesystem gives the test hosts a filesystem of their own, by
// pointing TMPDIR (where testhost puts a host's /nix) at a fresh ext4 with
// a journal on a loop device, like a real board's disk. This VM's own root
// is ext4 without a journal, where creating files within minutes of
// deleting many is quadratic: the inode allocator skips every inode freed
// in the last 60 s, or 360 s while its inode table block is dirty (perf:
// 95 % of the remote nix-daemon's time in find_inode_bit and
// recently_deleted after `nix-store --gc`; see bench/NOTES-copy.md). With
// NBUILD_BENCH_COPY_FS=root the hosts stay on the root filesystem.
// copyBenchSetup calls it after its gates and before anything calls
// t.TempDir (which keeps its first parent).
func remoteFilesystem(t *testing.T) {
	if os.Getenv("NBUILD_BENCH_COPY_FS") == "root" {
		return
	}
	dir, err := os.MkdirTemp("", "nbuild-bench-fs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"truncate", "-s", "8G", img},
		{"mkfs.ext4", "-q", "-F", img},
		{"mount", "-o", "loop", img, mnt},
	} {
		if b, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	// Registered after TempDir's removal, so it runs before it.
	t.Cleanup(func() {
		// Lazily: a test host's namespace may still be on its way out.
		if b, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, b)
		}
	})
	t.Setenv("TMPDIR", mnt)
}

// TestCopyFromVsNix pulls the benchmark closure from a host over the
// shaped link into a second host (its own /nix and nix-daemon), with
// nix-copy-closure --from and nbuild copy --from run inside that second
// host, in the same hyperfine run. Same gate as TestCopyVsNix.
func TestCopyFromVsNix(t *testing.T) {
	out, nbuild, root := copyBenchSetup(t)
	src := testhost.New(t, testhost.Options{})
	fill := exec.Command(nbuild, "copy", "-Q", "--to", src.Addr, root)
	fill.Env = append(os.Environ(), "NIX_SSHOPTS="+src.SSHOpts())
	if b, err := fill.CombinedOutput(); err != nil {
		t.Fatalf("filling the source host: %v\n%s", err, b)
	}
	dst := testhost.New(t, testhost.Options{Daemon: true})
	relay := testhost.NewRelay(t, src.HostAddr(), testhost.RelayOptions{RateBytesPerSec: 12_500_000, Delay: 10 * time.Millisecond})
	in := fmt.Sprintf("nsenter --target %s --mount -- ", hostPid(t, dst))
	env := fmt.Sprintf("env NIX_SSHOPTS=\"%s -o HostName=127.0.0.1\" ", src.SSHOptsPort(relay.Port))
	args := []string{"-N", "--runs", "2", "--export-markdown", filepath.Join(out, "shaped-from.md"),
		"--export-json", filepath.Join(out, "shaped-from.json"),
		"--prepare", "bash -c '" + in + "nix-store --gc >/dev/null 2>&1 && sync'"}
	for _, c := range []string{
		"nix-copy-closure --from root@board " + root,
		nbuild + " copy -Q --from root@board " + root,
		nbuild + " copy -Q --compress none --from root@board " + root,
	} {
		args = append(args, "bash -c '"+in+env+c+"'")
	}
	cmd := exec.Command("hyperfine", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	t.Logf("hyperfine %s", strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		t.Fatalf("hyperfine: %v", err)
	}
	dst.MustRun("nix-store", "--verify-path", root) // the last copy left it valid and intact
}
