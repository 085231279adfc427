package executor_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/sched/executor"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/storetest"
	"github.com/nbuild/nbuild/store/testhost"
)

// noSubstituters keeps the daemons from asking cache.nixos.org (there is
// no network here).
var noSubstituters = map[string]string{"substituters": ""}

// dag is a job graph of tiny /bin/sh derivations: node i needs deps[i].
type dag struct {
	names []string
	deps  [][]int
	roots []int // built for the user: copied back to the local store
	// feature, when set for a node, is a system feature it requires.
	feature map[int]string
}

// instantiate writes the graph as a Nix expression (salted, so nothing
// is built already) and returns its .drv paths, by node.
func (g *dag) instantiate(t *testing.T) []store.Path {
	t.Helper()
	storetest.RequireDaemon(t)
	salt := fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
	var b strings.Builder
	fmt.Fprintf(&b, "let mk = name: deps: features: derivation { inherit name; system = \"x86_64-linux\"; builder = \"/bin/sh\";\n"+
		"  salt = %q; requiredSystemFeatures = features;\n"+
		"  args = [ \"-c\" \"/bin/cat ${toString deps} /dev/null > $out; /bin/echo ${name} >> $out\" ]; };\nin rec {\n", salt)
	for i, name := range g.names {
		var deps []string
		for _, d := range g.deps[i] {
			deps = append(deps, g.names[d])
		}
		feat := "[]"
		if f := g.feature[i]; f != "" {
			feat = "[ \"" + f + "\" ]"
		}
		fmt.Fprintf(&b, "  %s = mk %q [ %s ] %s;\n", name, name, strings.Join(deps, " "), feat)
	}
	b.WriteString("}\n")
	file := filepath.Join(t.TempDir(), "dag.nix")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{file}
	for _, name := range g.names {
		args = append(args, "-A", name)
	}
	out, err := exec.Command("nix-instantiate", args...).Output()
	if err != nil {
		t.Fatalf("nix-instantiate: %v", err)
	}
	var drvs []store.Path
	for _, f := range strings.Fields(string(out)) {
		p, err := store.ParsePath(f)
		if err != nil {
			t.Fatal(err)
		}
		drvs = append(drvs, p)
	}
	if len(drvs) != len(g.names) {
		t.Fatalf("%d derivations for %d names", len(drvs), len(g.names))
	}
	return drvs
}

// jobs are the executor's and the scheduler's views of the graph.
func (g *dag) jobs(t *testing.T, drvs []store.Path) ([]executor.Job, []sched.Job) {
	t.Helper()
	ej := make([]executor.Job, len(drvs))
	sj := make([]sched.Job, len(drvs))
	root := map[int]bool{}
	for _, r := range g.roots {
		root[r] = true
	}
	for i, p := range drvs {
		data, err := os.ReadFile(p.String())
		if err != nil {
			t.Fatal(err)
		}
		d, err := drv.Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		ej[i] = executor.Job{Drv: p, Keep: root[i]}
		for _, o := range d.Outputs {
			ej[i].Outputs = append(ej[i].Outputs, o.Path)
		}
		var feats []string
		if f := g.feature[i]; f != "" {
			feats = []string{f}
		}
		sj[i] = sched.Job{Name: g.names[i], Platform: sched.MustPlatform("x86_64-linux", feats...),
			Deps: g.deps[i], Expected: time.Second}
	}
	return ej, sj
}

// countingDial counts the connections open to the local daemon and the
// most open at once.
type countingDial struct {
	open, peak, total atomic.Int64
}

func (c *countingDial) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c.total.Add(1)
	n := c.open.Add(1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return &countedConn{Conn: nc, c: c}, nil
}

type countedConn struct {
	net.Conn
	c    *countingDial
	once sync.Once
}

func (cc *countedConn) Close() error {
	cc.once.Do(func() { cc.c.open.Add(-1) })
	return cc.Conn.Close()
}

func localMachine(jobs uint) sched.Machine {
	return sched.Machine{URI: "daemon", Local: true, Systems: []string{"x86_64-linux"}, MaxJobs: jobs, SpeedFactor: 1}
}

// TestLocalPoolBoundsConnections runs 16 independent builds with 16
// local slots through a pool of 4: the daemon never sees more than 4
// connections, and every build succeeds.
func TestLocalPoolBoundsConnections(t *testing.T) {
	g := &dag{}
	for i := range 16 {
		g.names = append(g.names, fmt.Sprintf("leaf%d", i))
		g.deps = append(g.deps, nil)
		g.roots = append(g.roots, i)
	}
	drvs := g.instantiate(t)
	ej, sj := g.jobs(t, drvs)
	machines := []sched.Machine{localMachine(16)}
	plan, err := sched.NewPlan(sj, machines)
	if err != nil {
		t.Fatal(err)
	}
	var count countingDial
	pool := executor.NewLocalPool(executor.LocalPoolOptions{Size: 4, Options: noSubstituters, DialContext: count.dial})
	route := executor.Router{&executor.Local{Pool: pool, Jobs: ej, Options: noSubstituters}}
	var running, mostRunning atomic.Int64
	exec := executorFunc(func(ctx context.Context, a sched.Assignment, results chan<- sched.Result) {
		if n := running.Add(1); n > mostRunning.Load() {
			mostRunning.Store(n) // only Run's goroutine starts builds
		}
		inner := make(chan sched.Result, 1)
		route.Start(ctx, a, inner)
		go func() {
			r := <-inner
			running.Add(-1)
			results <- r
		}()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := sched.NewScheduler(plan, sched.Options{})
	if err := s.Run(ctx, exec, sched.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	route.Close()
	pool.Close()
	for _, j := range ej {
		verifyLocal(t, j.Outputs...)
	}
	if p := count.peak.Load(); p > 4 || p < 1 {
		t.Errorf("%d connections open at once, want 1 to 4", p)
	}
	if n := count.open.Load(); n != 0 {
		t.Errorf("%d connections open after Close", n)
	}
	t.Logf("builds started at once: %d; connections: %d dialled, at most %d open", mostRunning.Load(), count.total.Load(), count.peak.Load())
}

type executorFunc func(ctx context.Context, a sched.Assignment, results chan<- sched.Result)

func (f executorFunc) Start(ctx context.Context, a sched.Assignment, results chan<- sched.Result) {
	f(ctx, a, results)
}

func verifyLocal(t *testing.T, paths ...store.Path) {
	t.Helper()
	for _, p := range paths {
		if out, err := exec.Command("nix-store", "--verify-path", p.String()).CombinedOutput(); err != nil {
			t.Errorf("%s is not valid locally: %v %s", p, err, out)
		}
	}
}

// sshConfig writes an ssh configuration naming each host host-N, as a
// user reaches builders whose machine URIs carry no port, from ssh
// command-line options (a test host's SSHArgs), and returns a getenv with
// NIX_SSHOPTS pointing at it.
func sshConfig(t *testing.T, args ...[]string) func(string) string {
	t.Helper()
	var cfg strings.Builder
	for i, a := range args {
		fmt.Fprintf(&cfg, "Host host-%d\n  HostName 127.0.0.1\n", i)
		for k := 0; k+1 < len(a); k += 2 {
			switch a[k] {
			case "-p":
				fmt.Fprintf(&cfg, "  Port %s\n", a[k+1])
			case "-i":
				fmt.Fprintf(&cfg, "  IdentityFile %s\n", a[k+1])
			case "-o":
				fmt.Fprintf(&cfg, "  %s\n", strings.Replace(a[k+1], "=", " ", 1))
			default:
				t.Fatalf("ssh option %s has no configuration keyword here", a[k])
			}
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
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// wire builds the executors as the CLI does: one local pool shared by
// all, one Remote per builder with a shared prompt lock.
func wire(machines []sched.Machine, jobs []executor.Job, getenv func(string) string, pool *executor.LocalPoolOptions, ev executor.Events) (executor.Router, func()) {
	p := executor.NewLocalPool(*pool)
	held := executor.NewHeld()
	var prompt sync.Mutex
	route := make(executor.Router, len(machines))
	for m := range machines {
		if machines[m].Local {
			route[m] = &executor.Local{Pool: p, Jobs: jobs, Events: ev, Options: noSubstituters, Held: held}
			continue
		}
		r := &executor.Remote{Machine: machines[m], Jobs: jobs, Events: ev, Local: p, Getenv: getenv,
			Options: noSubstituters, Held: held, LoginBackoff: 50 * time.Millisecond}
		r.SSH.Prompt = &prompt
		route[m] = r
	}
	return route, func() {
		route.Close()
		p.Close()
	}
}

// TestUnreachableSoleBuilder: the only builder that can build some
// derivations refuses connections. The run ends at once (no waiting for
// a back-off) with an error that names the derivations and the builder;
// with keep-going, what does not depend on them is built.
func TestUnreachableSoleBuilder(t *testing.T) {
	storetest.RequireRoot(t)
	g := &dag{
		names:   []string{"remote-a", "remote-b", "local-c"},
		deps:    [][]int{nil, {0}, nil},
		roots:   []int{1, 2},
		feature: map[int]string{0: "far", 1: "far"},
	}
	drvs := g.instantiate(t)
	ej, sj := g.jobs(t, drvs)
	getenv := sshConfig(t, []string{"-p", fmt.Sprint(closedPort(t)), "-o", "BatchMode=yes"})
	machines := []sched.Machine{localMachine(1),
		{URI: "ssh-ng://root@host-0", Systems: []string{"x86_64-linux"}, MaxJobs: 8, SpeedFactor: 1, SupportedFeatures: []string{"far"}}}
	plan, err := sched.NewPlan(sj, machines)
	if err != nil {
		t.Fatal(err)
	}
	for _, keepGoing := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep-going=%v", keepGoing), func(t *testing.T) {
			var unreachable atomic.Int64
			route, closeAll := wire(machines, ej, getenv, &executor.LocalPoolOptions{Options: noSubstituters},
				executor.Events{Unreachable: func(job, machine int, reason string) { unreachable.Add(1) }})
			defer closeAll()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// The default 30 s back-off of a lost machine would show as a
			// stall; an unreachable one must not wait for it.
			s := sched.NewScheduler(plan, sched.Options{KeepGoing: keepGoing, Backoff: time.Hour})
			err := s.Run(ctx, route, sched.RunOptions{})
			if ctx.Err() != nil {
				t.Fatalf("the run did not end: %v", err)
			}
			if !errors.Is(err, sched.ErrBuildFailed) {
				t.Fatalf("run: %v, want a build failure", err)
			}
			msg := err.Error()
			for _, want := range []string{"remote-a", "ssh-ng://root@host-0", "unreachable", "3 login attempts", "Connection refused", "exit status 255"} {
				if !strings.Contains(msg, want) {
					t.Errorf("the error does not mention %q: %s", want, msg)
				}
			}
			if unreachable.Load() == 0 {
				t.Errorf("no Unreachable event")
			}
			if keepGoing {
				if s.State(2) != sched.Done || s.State(1) != sched.Skipped {
					t.Errorf("keep-going: local-c %v, remote-b %v; want built and skipped", s.State(2), s.State(1))
				}
				verifyLocal(t, ej[2].Outputs...)
			}
			t.Logf("%v", err)
		})
	}
}

// wideDAG is 32 leaves, 8 middles of 4 leaves each, and a root over the
// middles: 41 tiny builds, the shape of issue 14's report.
func wideDAG() *dag {
	g := &dag{}
	for i := range 32 {
		g.names = append(g.names, fmt.Sprintf("leaf%d", i))
		g.deps = append(g.deps, nil)
	}
	var mids []int
	for m := range 8 {
		mids = append(mids, len(g.names))
		g.names = append(g.names, fmt.Sprintf("mid%d", m))
		g.deps = append(g.deps, []int{4 * m, 4*m + 1, 4*m + 2, 4*m + 3})
	}
	g.roots = []int{len(g.names)}
	g.names = append(g.names, "root")
	g.deps = append(g.deps, mids)
	return g
}

// TestRunOnTestHosts builds the 41-derivation DAG on the local daemon (2
// jobs) and two test hosts (8 jobs each), wired as the CLI wires the
// library. The local daemon never sees more connections than the shared
// pool's size, and each host sees one login. In the second run one host
// is killed (sshd, its sessions and daemon) after it built a few jobs:
// its jobs, and the outputs only it held, are built elsewhere, and the
// run still succeeds.
func TestRunOnTestHosts(t *testing.T) {
	for _, kill := range []bool{false, true} {
		t.Run(fmt.Sprintf("kill=%v", kill), func(t *testing.T) {
			hosts := []*testhost.Host{testhost.New(t, testhost.Options{Daemon: true}), testhost.New(t, testhost.Options{Daemon: true})}
			getenv := sshConfig(t, hosts[0].SSHArgs(), hosts[1].SSHArgs())
			g := wideDAG()
			drvs := g.instantiate(t)
			ej, sj := g.jobs(t, drvs)
			machines := []sched.Machine{localMachine(2),
				{URI: "ssh-ng://root@host-0", Systems: []string{"x86_64-linux"}, MaxJobs: 8, SpeedFactor: 2, SupportedFeatures: []string{"big"}},
				{URI: "ssh-ng://root@host-1", Systems: []string{"x86_64-linux"}, MaxJobs: 8, SpeedFactor: 1}}
			plan, err := sched.NewPlan(sj, machines)
			if err != nil {
				t.Fatal(err)
			}
			var count countingDial
			size := executor.PoolSize(machines)
			var builtOn [3]atomic.Int64
			var killed sync.WaitGroup
			var lost atomic.Int64
			ev := executor.Events{
				Built: func(job, machine int, res *store.BuildResult) {
					if builtOn[machine].Add(1) == 3 && kill && machine == 2 {
						killed.Add(1)
						go func() {
							defer killed.Done()
							killSSHD(t, hosts[1])
						}()
					}
				},
				Lost: func(job, machine int, reason string) {
					lost.Add(1)
					t.Logf("lost: %s on machine %d: %s", g.names[job], machine, reason)
				},
				Unreachable: func(job, machine int, reason string) {
					lost.Add(1)
					t.Logf("unreachable: %s: %s", g.names[job], reason)
				},
			}
			route, closeAll := wire(machines, ej, getenv, &executor.LocalPoolOptions{Size: size, Options: noSubstituters, DialContext: count.dial}, ev)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			s := sched.NewScheduler(plan, sched.Options{})
			start := time.Now()
			err = s.Run(ctx, route, sched.RunOptions{})
			elapsed := time.Since(start)
			killed.Wait()
			closeAll()
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			root := ej[g.roots[0]].Outputs[0]
			verifyLocal(t, root)
			if b, err := os.ReadFile(root.String()); err != nil || !strings.HasSuffix(string(b), "mid7\nroot\n") || strings.Count(string(b), "leaf") != 32 {
				t.Errorf("root output %q, %v", b, err)
			}
			if p := count.peak.Load(); p > int64(size) {
				t.Errorf("%d connections to the local daemon at once, pool size %d", p, size)
			}
			if n := count.open.Load(); n != 0 {
				t.Errorf("%d local connections open after the run", n)
			}
			for i, h := range hosts {
				if kill && i == 1 {
					continue
				}
				if n := logins(h); n != 1 {
					t.Errorf("host-%d: %d logins, want 1", i, n)
				}
			}
			if kill && builtOn[2].Load() < 3 {
				t.Fatalf("host-1 built %d jobs; it was never killed, the test proves nothing", builtOn[2].Load())
			}
			t.Logf("%v: built local %d, host-0 %d, host-1 %d; lost %d; local connections %d dialled, at most %d open (pool %d)",
				elapsed.Round(time.Millisecond), builtOn[0].Load(), builtOn[1].Load(), builtOn[2].Load(), lost.Load(),
				count.total.Load(), count.peak.Load(), size)
		})
	}
}

// killSSHD kills a test host's sshd: the listener and the per-connection
// sshd processes under it, as a crashed sshd would go, but not the
// shells and commands they started (those end on their own when their
// input closes). Killing a shell mid-start could leave a lock of root's
// shell start-up files (shared with the machine) behind.
func killSSHD(t *testing.T, h *testhost.Host) {
	conf := filepath.Join(h.Dir, "ssh", "sshd_config")
	parent := map[int]int{}
	comm := map[int]string{}
	listener := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		i := strings.LastIndexByte(string(stat), ')')
		var state string
		var ppid int
		fmt.Sscan(string(stat[i+1:]), &state, &ppid)
		parent[pid] = ppid
		comm[pid] = string(stat[strings.IndexByte(string(stat), '(')+1 : i])
		if cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline"); comm[pid] == "sshd" && strings.Contains(string(cmd), conf) {
			listener = pid
		}
	}
	if listener == 0 {
		t.Errorf("no sshd of %s found", conf)
		return
	}
	under := func(pid int) bool {
		for ; pid > 1; pid = parent[pid] {
			if pid == listener {
				return true
			}
		}
		return false
	}
	for pid := range parent {
		if comm[pid] == "sshd" && under(pid) && pid != listener {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	syscall.Kill(listener, syscall.SIGKILL)
}

func logins(h *testhost.Host) int {
	return strings.Count(h.SSHLog(), "Accepted publickey")
}
