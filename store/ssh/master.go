package ssh

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Master is one authenticated ssh connection to a host (OpenSSH's
// ControlMaster) that sessions are multiplexed over, so that many
// sessions cost one login, one host-key check and at most one prompt. It
// mirrors 2.8 src/libstore/ssh.cc SSHMaster::startMaster: `ssh HOST -M -N
// -S SOCKET` with a LocalCommand that prints "started" once ssh has
// logged in, and sessions run `ssh -S SOCKET`.
//
// Unlike Nix, the master runs in the foreground as nbuild's child
// (ControlPersist=no): it lives exactly as long as the Master (Close ends
// it, and it gets a parent-death signal, so a crashed nbuild leaves no
// master behind), and a master that dies is noticed and started again by
// the next Start or Dial. The control socket and the known-hosts file
// live in a private (0700) temporary directory that Close removes.
type Master struct {
	host string
	opts Options
	dir  string
	sock string

	mu     sync.Mutex // serialises Start and Close
	cmd    *exec.Cmd
	exited chan struct{} // closed when the running master exited
	tail   *tailBuffer
	closed bool
}

// NewMaster prepares a master connection to host ("[user@]host"); no
// process starts before Start or Dial. opts apply to the master and to
// every session; with PublicHostKey set, the key is the only one ssh
// trusts for the host besides its global known-hosts file.
func NewMaster(host string, opts Options) (*Master, error) {
	if _, err := commonArgs(host, opts); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "nbuild-ssh-")
	if err != nil {
		return nil, err
	}
	m := &Master{host: host, opts: opts, dir: dir, sock: filepath.Join(dir, "ssh.sock")}
	if opts.PublicHostKey != "" {
		file, err := WriteKnownHosts(dir, host, opts.PublicHostKey)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		m.opts.KnownHostsFile = file
	}
	if m.opts.StderrTail <= 0 {
		m.opts.StderrTail = 16 << 10
	}
	if m.opts.CloseTimeout <= 0 {
		m.opts.CloseTimeout = 10 * time.Second
	}
	return m, nil
}

// ErrHostKey is wrapped when a builders line's public host key is not
// valid base64.
var ErrHostKey = errors.New("ssh: invalid public host key")

// WriteKnownHosts writes dir/host-key, a known-hosts file that gives
// publicHostKey (the base64 of a public key line, the 8th field of a
// builders line) as host's key, and returns its name. As 2.8 ssh.cc
// addCommonSSHOpts, the entry names the host without its user; ssh looks
// it up under that name, or the HostKeyAlias the ssh configuration gives.
func WriteKnownHosts(dir, host, publicHostKey string) (string, error) {
	key, err := decodeBase64(publicHostKey)
	if err != nil {
		return "", fmt.Errorf("%w for host '%s': %w", ErrHostKey, host, err)
	}
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		host = host[i+1:]
	}
	file := filepath.Join(dir, "host-key")
	line := host + " " + strings.TrimSpace(key) + "\n"
	if err := os.WriteFile(file, []byte(line), 0o600); err != nil {
		return "", err
	}
	return file, nil
}

// decodeBase64 decodes as 2.8's lenient base64Decode (src/libutil/util.cc):
// decoding stops at the first '=', newlines are skipped, other bytes
// outside the alphabet are an error.
func decodeBase64(s string) (string, error) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var out []byte
	var bits, n uint
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '=' {
			break
		}
		if c == '\n' {
			continue
		}
		d := strings.IndexByte(alphabet, c)
		if d < 0 {
			return "", fmt.Errorf("invalid character in Base64 string: '%c'", c)
		}
		bits = bits<<6 | uint(d)
		n += 6
		if n >= 8 {
			n -= 8
			out = append(out, byte(bits>>n))
			bits &= 1<<n - 1
		}
	}
	return string(out), nil
}

// Host returns the host the master connects to.
func (m *Master) Host() string { return m.host }

// Start logs in unless a master is running already, and returns when ssh
// has authenticated (or failed: an *Error with ssh's message, such as
// "Host key verification failed."). While it logs in, Options.Prompt is
// held. ctx bounds the login.
func (m *Master) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.cmd != nil {
		select {
		case <-m.exited:
			m.cmd = nil // died: log in again
		default:
			return nil
		}
	}
	if m.opts.Prompt != nil {
		m.opts.Prompt.Lock()
		defer m.opts.Prompt.Unlock()
	}
	args, err := commonArgs(m.host, m.opts)
	if err != nil {
		return err
	}
	args = append(args, "-M", "-N", "-S", m.sock,
		"-o", "ControlPersist=no",
		"-o", "PermitLocalCommand=yes",
		"-o", "LocalCommand=echo started")
	prog := m.opts.Program
	if prog == "" {
		prog = "ssh"
	}
	cmd := exec.Command(prog, args...)
	// ssh runs LocalCommand with the user's shell; /bin/sh is enough.
	env := m.opts.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(withoutVar(env, "SHELL"), "SHELL=/bin/sh")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	tail := newTailBuffer(m.opts.StderrTail)
	if m.opts.Stderr != nil {
		cmd.Stderr = multiWriter{tail, m.opts.Stderr}
	} else {
		cmd.Stderr = tail
	}
	if err := cmd.Start(); err != nil {
		return &Error{Host: m.host, Err: err}
	}
	exited := make(chan struct{})
	var waitErr error
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
		// Wait closes stdout; the master writes nothing else to it.
		waitErr = cmd.Wait()
		close(exited)
	}()
	fail := func(err error) error {
		cmd.Process.Kill()
		<-exited
		msg := strings.TrimSpace(tail.String())
		if waitErr != nil && ctx.Err() == nil {
			err = waitErr // ssh's exit status says more
		}
		return &Error{Host: m.host, Stderr: msg, Err: err}
	}
	select {
	case s := <-line:
		if s != "started\n" {
			return fail(errors.New("ssh master did not start"))
		}
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	m.cmd, m.exited, m.tail = cmd, exited, tail
	return nil
}

// Dial starts the master if needed, then runs remoteCmd on the host over
// it (see the package's Dial). If the master dies between the two, ssh
// logs in by itself.
func (m *Master) Dial(ctx context.Context, remoteCmd []string) (*Conn, error) {
	if err := m.Start(ctx); err != nil {
		return nil, err
	}
	opts := m.opts
	// -S wins over any ControlPath in NIX_SSHOPTS or the configuration.
	opts.ExtraArgs = append(append([]string(nil), opts.ExtraArgs...), "-S", m.sock, "-o", "ControlMaster=no")
	return Dial(ctx, m.host, remoteCmd, opts)
}

// Close ends the master (sessions over it end too; close them first) and
// removes its directory.
func (m *Master) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	if m.cmd != nil {
		m.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(m.opts.CloseTimeout)
		select {
		case <-m.exited:
		case <-t.C:
			m.cmd.Process.Kill()
			<-m.exited
		}
		t.Stop()
		m.cmd = nil
	}
	return os.RemoveAll(m.dir)
}

// Running reports whether a master process is up.
func (m *Master) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

func withoutVar(env []string, name string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

type multiWriter [2]interface{ Write([]byte) (int, error) }

func (w multiWriter) Write(p []byte) (int, error) {
	w[0].Write(p)
	w[1].Write(p)
	return len(p), nil
}
