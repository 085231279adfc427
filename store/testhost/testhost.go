// Package testhost gives tests a real remote Nix host on this machine: a
// private mount namespace whose /nix is a scratch directory (so it has its
// own store and database), an sshd on a loopback port that runs inside the
// namespace (so the commands it spawns, such as `nix-store --serve` and
// `nix-daemon --stdio`, act on that store), and optionally the host's own
// nix-daemon. Besides root, whom Nix always trusts, the host can accept a
// login as an ordinary user whom its daemon does not trust
// (Options.User). NewRelay puts a slow, delaying link of our own between
// ssh and sshd.
//
// Everything is started and torn down by the test: processes are ended by
// pid (every process inside the host's namespace was started by it), the
// namespace and its mount vanish with its last process, and processes get
// a parent-death signal so a killed test binary leaves nothing behind.
// Only loopback is used.
//
// It is a normal package so tests of several packages can share it; it is
// not meant for production code.
package testhost

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store/storetest"
)

// Options configure New. The zero value gives a host with a store and an
// sshd, without a nix-daemon.
type Options struct {
	// Daemon starts a nix-daemon inside the host, listening on the
	// host's /nix/var/nix/daemon-socket/socket.
	Daemon bool
	// NixConf is appended to the host's own nix.conf, which starts as a
	// copy of the machine's /etc/nix/nix.conf with build users turned off
	// (see writeNixConf): each host has its own
	// /etc/nix, so it can be given other system-features or
	// extra-platforms, as a real builder would have.
	NixConf string
	// User, when set, is a second ssh login besides root: a user of that
	// name (which the machine must not have) exists only inside the host,
	// through copies of /etc/passwd and /etc/group mounted in its
	// namespace, with an unused uid, shell /bin/sh, a home under Dir and
	// the same client key as root. Like any non-root user its Nix reaches
	// the store through the host's nix-daemon, which is therefore started
	// as with Daemon, and which does not trust it (trusted-users is root
	// unless NixConf says otherwise): the host is then a builder that an
	// ordinary user copies to.
	User string
}

// HostKeyAlias is the name ssh checks the host key under, whatever the
// port: the direct port and relays share one known_hosts entry.
const HostKeyAlias = "nbuild-testhost"

// Host is a running test host.
type Host struct {
	// Addr is the ssh destination, "root@127.0.0.1".
	Addr string
	// UserAddr is the ssh destination of Options.User ("alice@127.0.0.1"),
	// empty without one; UID is that user's uid. SSHOpts, Getenv and the
	// other ssh options serve both logins.
	UserAddr string
	UID      int
	// Port is sshd's loopback port.
	Port int
	// Dir is the scratch directory: Dir/nix is the host's /nix, Dir/ssh
	// holds keys, configuration and sshd's log.
	Dir string
	// Key is the client's private key file; KnownHosts the known_hosts
	// file holding the host key under HostKeyAlias.
	Key, KnownHosts string

	t      testing.TB
	anchor *exec.Cmd // holds the namespace: sleeps until killed
	mntNS  string    // readlink of /proc/PID/ns/mnt of the anchor
	// nsFile holds the namespace open until teardown has killed every
	// process in it: a namespace's identity (its nsfs inode) may be
	// reused once it is gone, and must not match another test's host.
	nsFile  *os.File
	sshd    *exec.Cmd
	daemon  *exec.Cmd
	sshdLog string
	user    string // Options.User
}

// New starts a host and registers its teardown with t.Cleanup. It skips
// (or fails in CI) when not root or Nix is missing.
func New(t testing.TB, opts Options) *Host {
	t.Helper()
	storetest.RequireRoot(t)
	storetest.RequireNix(t)
	storetest.RequireTools(t, "unshare", "nsenter", "ssh", "ssh-keygen", sshdPath)
	dir := t.TempDir()
	if strings.ContainsAny(dir, " \t\n") {
		// NIX_SSHOPTS is split on whitespace.
		t.Fatalf("testhost: scratch directory %q contains whitespace", dir)
	}
	h := &Host{Addr: "root@127.0.0.1", Dir: dir, t: t}
	t.Cleanup(h.teardown)
	if err := h.start(opts); err != nil {
		t.Fatalf("testhost: %v", err)
	}
	return h
}

const sshdPath = "/usr/sbin/sshd"

func (h *Host) start(opts Options) error {
	nixDir := filepath.Join(h.Dir, "nix")
	sshDir := filepath.Join(h.Dir, "ssh")
	for _, d := range []string{nixDir, sshDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	etcDir := filepath.Join(h.Dir, "etc-nix")
	if err := writeNixConf(etcDir, opts.NixConf); err != nil {
		return err
	}
	var mounts []string // pairs: source in Dir, target in the namespace
	if opts.User != "" {
		var err error
		if mounts, err = h.addUser(opts.User); err != nil {
			return err
		}
	}
	// root logs in to a home of the host's own: the machine's dotfiles
	// (here a .bashrc running `pyenv init`, whose rehash lock outlives a
	// session a test kills and then stalls every later login for 60 s)
	// must not run in every session.
	rootHome := filepath.Join(h.Dir, "root-home")
	if err := os.MkdirAll(rootHome, 0o700); err != nil {
		return err
	}
	mounts = append(mounts, rootHome, "/root")
	if err := h.startAnchor(nixDir, etcDir, mounts); err != nil {
		return err
	}
	if out, err := h.Run("nix-store", "--init"); err != nil {
		return fmt.Errorf("nix-store --init: %v: %s", err, out)
	}
	if err := h.writeKeys(sshDir); err != nil {
		return err
	}
	if opts.User != "" {
		if err := h.authorizeUser(sshDir); err != nil {
			return err
		}
	}
	// sshd refuses to start without its privilege separation directory,
	// which a machine that does not run an sshd may lack.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return err
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = h.startSSHD(sshDir, opts.User); err == nil {
			break
		}
	}
	if err != nil {
		return err
	}
	if opts.Daemon || opts.User != "" {
		if err := h.startDaemon(nixDir); err != nil {
			return err
		}
	}
	return nil
}

// writeNixConf writes the host's /etc/nix: the machine's nix.conf (Nix's
// defaults if it has none) followed by extra.
func writeNixConf(dir, extra string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// The bind mount needs a mount point on the machine.
	if err := os.MkdirAll("/etc/nix", 0o755); err != nil {
		return err
	}
	base, err := os.ReadFile("/etc/nix/nix.conf")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	conf := string(base)
	if conf != "" && !strings.HasSuffix(conf, "\n") {
		conf += "\n"
	}
	// The machine's nixbld users are shared by every store on it, but each
	// daemon takes them from a pool locked under its own /nix: two daemons
	// could build as the same uid, and Nix kills all of a build user's
	// processes before a build starts. A host's builds therefore run
	// without build users.
	conf += "build-users-group =\n"
	return os.WriteFile(filepath.Join(dir, "nix.conf"), []byte(conf+extra), 0o644)
}

// startAnchor creates the namespace: unshare runs a shell that bind-mounts
// the scratch /nix, the host's /etc/nix and the extra mounts (source and
// target pairs), says so, and then sleeps for as long as the host lives.
func (h *Host) startAnchor(nixDir, etcDir string, mounts []string) error {
	script := `mount --bind "$1" /nix && mount --bind "$2" /etc/nix && shift 2 &&
while [ $# -gt 0 ]; do mount --bind "$1" "$2" || exit 1; shift 2; done &&
echo ready && exec sleep 86400`
	args := append([]string{"--mount", "--propagation", "private", "--",
		"/bin/sh", "-c", script, "sh", nixDir, etcDir}, mounts...)
	cmd := exec.Command("unshare", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	h.anchor = cmd
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if s != "ready\n" {
			cmd.Wait()
			return fmt.Errorf("creating the mount namespace failed: %s", strings.TrimSpace(stderr.String()))
		}
	case <-time.After(20 * time.Second):
		return errors.New("creating the mount namespace timed out")
	}
	nsPath := fmt.Sprintf("/proc/%d/ns/mnt", cmd.Process.Pid)
	nsFile, err := os.Open(nsPath)
	if err != nil {
		return err
	}
	ns, err := os.Readlink(nsPath)
	if err != nil {
		nsFile.Close()
		return err
	}
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return err
	}
	if ns == self {
		nsFile.Close()
		return errors.New("unshare did not create a new mount namespace")
	}
	h.mntNS = ns
	h.nsFile = nsFile
	return nil
}

func (h *Host) writeKeys(sshDir string) error {
	hostKey := filepath.Join(sshDir, "host_ed25519")
	clientKey := filepath.Join(sshDir, "client_ed25519")
	for _, k := range []string{hostKey, clientKey} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nbuild-testhost", "-f", k).CombinedOutput(); err != nil {
			return fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	}
	clientPub, err := os.ReadFile(clientKey + ".pub")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(sshDir, "authorized_keys"), clientPub, 0o600); err != nil {
		return err
	}
	hostPub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		return err
	}
	fields := strings.Fields(string(hostPub))
	if len(fields) < 2 {
		return fmt.Errorf("bad host public key %q", hostPub)
	}
	h.KnownHosts = filepath.Join(sshDir, "known_hosts")
	if err := os.WriteFile(h.KnownHosts, []byte(HostKeyAlias+" "+fields[0]+" "+fields[1]+"\n"), 0o600); err != nil {
		return err
	}
	h.Key = clientKey
	return nil
}

func (h *Host) startSSHD(sshDir, user string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	conf := filepath.Join(sshDir, "sshd_config")
	h.sshdLog = filepath.Join(sshDir, "sshd.log")
	os.Remove(h.sshdLog) // from a failed attempt
	config := strings.Join([]string{
		"Port " + strconv.Itoa(port),
		"ListenAddress 127.0.0.1",
		"HostKey " + filepath.Join(sshDir, "host_ed25519"),
		"AuthorizedKeysFile " + filepath.Join(sshDir, "authorized_keys"),
		"PidFile none",
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"StrictModes no",
		"UsePAM no",
		"UseDNS no",
		"X11Forwarding no",
		"AllowTcpForwarding no",
		"AllowAgentForwarding no",
		"PrintMotd no",
		"PrintLastLog no",
		"MaxStartups 64",
		"MaxSessions 64",
		"LogLevel VERBOSE",
		"",
	}, "\n")
	if user != "" {
		// sshd reads a user's keys as that user, who cannot read root's
		// file (and must not be given root's %h/.ssh).
		config += "Match User " + user + "\n\tAuthorizedKeysFile " + h.userKeys() + "\n"
	}
	if err := os.WriteFile(conf, []byte(config), 0o600); err != nil {
		return err
	}
	// nsenter execs sshd in the host's namespace without forking, so the
	// pid we hold is sshd's. sshd must be run by absolute path (it
	// re-executes itself for every connection).
	cmd := h.nsCommand(sshdPath, "-D", "-f", conf, "-E", h.sshdLog)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting sshd: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	listening := fmt.Sprintf("Server listening on 127.0.0.1 port %d.", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			log, _ := os.ReadFile(h.sshdLog)
			return fmt.Errorf("sshd exited: %s%s", stderr.String(), tail(log))
		default:
		}
		// Our sshd's own log says when it listens: a banner on the port
		// could come from another test's server that took the port first.
		if log, _ := os.ReadFile(h.sshdLog); bytes.Contains(log, []byte(listening)) && sshBanner(port) {
			h.sshd = cmd
			h.Port = port
			return nil
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return errors.New("sshd did not come up within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *Host) startDaemon(nixDir string) error {
	cmd := h.nsCommand("nix-daemon")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logFile, err := os.Create(filepath.Join(h.Dir, "ssh", "nix-daemon.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting nix-daemon: %w", err)
	}
	h.daemon = cmd
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	socket := filepath.Join(nixDir, "var/nix/daemon-socket/socket")
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			log, _ := os.ReadFile(logFile.Name())
			return fmt.Errorf("nix-daemon exited: %s", tail(log))
		default:
		}
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("nix-daemon did not listen within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nsCommand returns a command that runs inside the host's namespace.
func (h *Host) nsCommand(args ...string) *exec.Cmd {
	return h.Command(context.Background(), args...)
}

// Command returns an unstarted command that runs args inside the host's
// namespace (it sees the host's /nix).
func (h *Host) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--target", strconv.Itoa(h.anchor.Process.Pid), "--mount", "--"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Run runs args inside the host's namespace (e.g. "nix-store",
// "--verify-path", p) and returns its stdout; a failure's error carries
// stderr. It gives up after two minutes.
func (h *Host) Run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := h.Command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s on test host: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// MustRun is Run that fails the test on error.
func (h *Host) MustRun(args ...string) string {
	h.t.Helper()
	out, err := h.Run(args...)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// StoreDir returns the directory on this machine that the host sees as
// /nix/store (for reading the host's files from outside).
func (h *Host) StoreDir() string { return filepath.Join(h.Dir, "nix", "store") }

// DaemonSocket returns the host's nix-daemon socket as a path on this
// machine (valid when Options.Daemon was set).
func (h *Host) DaemonSocket() string {
	return filepath.Join(h.Dir, "nix", "var", "nix", "daemon-socket", "socket")
}

// SSHLog returns sshd's log so far (for failure messages).
func (h *Host) SSHLog() string {
	b, _ := os.ReadFile(h.sshdLog)
	return string(b)
}

// SSHOpts returns the NIX_SSHOPTS value that reaches the host's sshd
// directly.
func (h *Host) SSHOpts() string { return h.SSHOptsPort(h.Port) }

// SSHOptsPort returns NIX_SSHOPTS for reaching the host through port on
// 127.0.0.1 (a Relay in front of the host).
func (h *Host) SSHOptsPort(port int) string {
	return strings.Join(h.SSHArgsPort(port), " ")
}

// SSHArgs returns the ssh options (no host, no command) that reach the
// host's sshd directly.
func (h *Host) SSHArgs() []string { return h.SSHArgsPort(h.Port) }

// SSHArgsPort is SSHArgs through port on 127.0.0.1.
func (h *Host) SSHArgsPort(port int) []string {
	return []string{
		"-p", strconv.Itoa(port),
		"-i", h.Key,
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + h.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "HostKeyAlias=" + HostKeyAlias,
		"-o", "StrictHostKeyChecking=yes",
		"-o", "CheckHostIP=no",
		"-o", "BatchMode=yes",
		"-o", "ControlMaster=no",
		"-o", "ControlPath=none",
		"-o", "ConnectTimeout=20",
		"-o", "ServerAliveInterval=5",
	}
}

// Getenv is os.Getenv except that NIX_SSHOPTS reaches the host directly;
// pass it where a getenv function is taken.
func (h *Host) Getenv(key string) string { return h.GetenvPort(h.Port)(key) }

// GetenvPort is Getenv through port (a Relay).
func (h *Host) GetenvPort(port int) func(string) string {
	opts := h.SSHOptsPort(port)
	return func(key string) string {
		if key == "NIX_SSHOPTS" {
			return opts
		}
		return os.Getenv(key)
	}
}

// Env returns the current environment with NIX_SSHOPTS set to reach the
// host, for running nix-copy-closure, ssh or nbuild as a subprocess.
func (h *Host) Env() []string { return h.EnvPort(h.Port) }

// EnvPort is Env through port (a Relay).
func (h *Host) EnvPort(port int) []string {
	env := []string{"NIX_SSHOPTS=" + h.SSHOptsPort(port)}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NIX_SSHOPTS=") {
			env = append(env, kv)
		}
	}
	return env
}

// Kill ends every process running in the host (sshd, its sessions such
// as a `nix-store --serve`, the nix-daemon, commands from Run) but keeps
// its store, as a crashed or rebooted remote would. The host is unusable
// over ssh afterwards; Run still works.
func (h *Host) Kill() {
	h.t.Helper()
	if err := h.killNamespace(false); err != nil {
		h.t.Errorf("testhost: %v", err)
	}
}

// KillSessions ends the processes sshd started for connections (for
// example a `nix-store --serve` mid-transfer) but keeps sshd and the
// daemon running, so the host accepts new connections.
func (h *Host) KillSessions() {
	h.t.Helper()
	keep := map[int]bool{h.anchor.Process.Pid: true, h.sshd.Process.Pid: true}
	if h.daemon != nil {
		// The daemon's per-connection workers are not kept: they are
		// sessions too.
		keep[h.daemon.Process.Pid] = true
	}
	for _, pid := range h.namespacePids() {
		if !keep[pid] {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func (h *Host) teardown() {
	if h.anchor == nil {
		return
	}
	if h.mntNS == "" {
		// Startup failed before the namespace was confirmed.
		h.anchor.Process.Kill()
		h.anchor.Wait()
		h.anchor = nil
		return
	}
	if err := h.killNamespace(true); err != nil {
		h.t.Errorf("testhost teardown: %v", err)
	}
	// Only now may the namespace (and its identity) go.
	h.nsFile.Close()
	h.mntNS = ""
	h.anchor = nil
}

// killNamespace SIGKILLs every process in the host's mount namespace
// (all of them descend from processes this Host started), optionally
// including the anchor, and waits until they are gone. With the anchor
// gone the namespace and its /nix mount disappear.
func (h *Host) killNamespace(anchorToo bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := h.namespacePids()
		left := 0
		for _, pid := range pids {
			if pid == h.anchor.Process.Pid && !anchorToo {
				continue
			}
			left++
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes in the host's namespace survive SIGKILL", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if anchorToo {
		// Reap our direct children (their Wait goroutines do, for sshd
		// and the daemon).
		h.anchor.Wait()
	}
	return nil
}

// namespacePids lists the processes whose mount namespace is the host's.
func (h *Host) namespacePids() []int {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if h.mntNS == "" || err != nil || self == h.mntNS {
		// Never match the machine's own namespace.
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ns, err := os.Readlink("/proc/" + e.Name() + "/ns/mnt")
		if err != nil || ns != h.mntNS {
			continue
		}
		// A zombie has no namespace link; one that is still listed has
		// not been reaped yet and needs no signal.
		pids = append(pids, pid)
	}
	return pids
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// sshBanner reports whether an ssh server answers on the port.
func sshBanner(port int) bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

func tail(b []byte) string {
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
