// Package ssh runs a command on a remote host through the system's ssh
// binary and exposes the command's stdin and stdout as one byte stream.
//
// Using the user's own ssh (not a Go ssh library) keeps everything users
// configured working: ~/.ssh/config, agents, ControlMaster sockets, jump
// hosts, known_hosts. The command line is built the way Nix 2.8 builds it
// (src/libstore/ssh.cc SSHMaster::startCommand, addCommonSSHOpts):
//
//	ssh HOST -x -a $NIX_SSHOPTS... [-i KEY] [-oUserKnownHostsFile=FILE] [-C] [-v] -- COMMAND
//
// NIX_SSHOPTS is split on whitespace, without shell quoting, as Nix does.
// Unlike Nix, the host "localhost" is not special-cased: Nix runs
// `bash -c COMMAND` locally for it, nbuild always runs ssh, so what
// "localhost" means is up to the user's ssh configuration.
//
// The remote's stderr (ssh's own messages and the remote command's logs)
// is kept in a bounded ring buffer, and its tail is part of every error,
// because that is where a remote `nix-store --serve` explains why it quit.
package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrInvalidHost is wrapped when the host name is empty or looks like an
// option.
var ErrInvalidHost = errors.New("ssh: invalid SSH host name")

// ErrClosed is returned by operations on a closed Conn.
var ErrClosed = errors.New("ssh: connection closed")

// Options configure Dial. The zero value runs "ssh" from PATH with the
// current environment.
type Options struct {
	// Program is the ssh binary; "" means "ssh" looked up in PATH.
	Program string
	// Port, when non-zero, is passed as -p PORT.
	Port int
	// Identity is a private key file passed as -i.
	Identity string
	// KnownHostsFile is passed as -oUserKnownHostsFile=FILE.
	KnownHostsFile string
	// PublicHostKey is the base64 of the host's public key line (the 8th
	// field of a builders line). A Master writes it to a known-hosts file
	// of its own and uses that as KnownHostsFile; Dial ignores it.
	PublicHostKey string
	// Prompt, when set, is held while a Master logs in, so that the
	// password or host-key prompts of several hosts do not overlap on
	// the terminal.
	Prompt sync.Locker
	// Compress adds -C (nix-copy-closure --gzip).
	Compress bool
	// Verbose adds -v (Nix does so at verbosity "chatty" and above).
	Verbose bool
	// ExtraArgs are inserted after NIX_SSHOPTS and before the options
	// above, e.g. {"-o", "ControlMaster=no"}.
	ExtraArgs []string
	// Getenv looks up NIX_SSHOPTS; nil means os.Getenv.
	Getenv func(string) string
	// Env is the environment ssh runs with; nil means the current one.
	Env []string
	// Stderr, when set, also receives everything the remote writes to
	// stderr (build logs); it must not block for long.
	Stderr io.Writer
	// StderrTail is how many bytes of stderr are kept for error
	// messages; 0 means 16 KiB.
	StderrTail int
	// CloseTimeout bounds how long Close waits for ssh to exit after
	// closing its stdin before it kills ssh; 0 means 10 s.
	CloseTimeout time.Duration
}

func (o *Options) getenv(k string) string {
	if o.Getenv != nil {
		return o.Getenv(k)
	}
	return os.Getenv(k)
}

// Args returns ssh's argument vector (without the program name) for
// running remoteCmd on host, as Dial would run it.
func Args(host string, remoteCmd []string, opts Options) ([]string, error) {
	if len(remoteCmd) == 0 {
		return nil, errors.New("ssh: no remote command")
	}
	args, err := commonArgs(host, opts)
	if err != nil {
		return nil, err
	}
	// ssh joins the words after the host into one string that the
	// remote login shell parses, so each word is quoted for sh.
	return append(args, "--", ShellJoin(remoteCmd)), nil
}

// commonArgs are the arguments up to the remote command.
func commonArgs(host string, opts Options) ([]string, error) {
	if host == "" || strings.HasPrefix(host, "-") {
		return nil, fmt.Errorf("%w '%s'", ErrInvalidHost, host)
	}
	args := []string{host, "-x", "-a"}
	args = append(args, strings.Fields(opts.getenv("NIX_SSHOPTS"))...)
	args = append(args, opts.ExtraArgs...)
	if opts.Port != 0 {
		args = append(args, "-p", strconv.Itoa(opts.Port))
	}
	if opts.Identity != "" {
		args = append(args, "-i", opts.Identity)
	}
	if opts.KnownHostsFile != "" {
		args = append(args, "-oUserKnownHostsFile="+opts.KnownHostsFile)
	}
	if opts.Compress {
		args = append(args, "-C")
	}
	if opts.Verbose {
		args = append(args, "-v")
	}
	return args, nil
}

// ShellJoin quotes each word for a POSIX shell where needed and joins them
// with spaces.
func ShellJoin(words []string) string {
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=/.,:@%") == "" {
			b.WriteString(w)
			continue
		}
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(w, "'", `'\''`))
		b.WriteByte('\'')
	}
	return b.String()
}

// Error is an ssh session failure: ssh could not connect, or the remote
// command failed. Stderr holds the tail of what the remote (or ssh)
// printed.
type Error struct {
	Host   string
	Stderr string
	Err    error
}

func (e *Error) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	switch {
	case msg != "" && e.Err != nil:
		return fmt.Sprintf("ssh to %s: %s (%v)", e.Host, msg, e.Err)
	case msg != "":
		return fmt.Sprintf("ssh to %s: %s", e.Host, msg)
	default:
		return fmt.Sprintf("ssh to %s: %v", e.Host, e.Err)
	}
}

func (e *Error) Unwrap() error { return e.Err }

// Conn is a running ssh session: reads come from the remote command's
// stdout, writes go to its stdin. Read and Write may be used from two
// goroutines at once; Close may be called from any goroutine and
// unblocks both.
type Conn struct {
	host   string
	cmd    *exec.Cmd
	stdin  *os.File // our end of ssh's stdin
	stdout *os.File // our end of ssh's stdout
	tail   *tailBuffer
	opts   Options

	stderrDone chan struct{} // closed when ssh's stderr reached EOF
	exited     chan struct{} // closed when ssh exited; then exitErr is set
	exitErr    error

	closeOnce sync.Once
	closeErr  error
	mu        sync.Mutex
	stdinShut bool
	killed    bool
}

// Dial starts ssh to run remoteCmd on host ("[user@]host"). It does not
// wait for authentication: the first Read shows whether the session came
// up (an early EOF means it did not; see Err/StderrTail). ctx bounds only
// the start; use Close to end the session.
func Dial(ctx context.Context, host string, remoteCmd []string, opts Options) (*Conn, error) {
	args, err := Args(host, remoteCmd, opts)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prog := opts.Program
	if prog == "" {
		prog = "ssh"
	}
	if opts.StderrTail <= 0 {
		opts.StderrTail = 16 << 10
	}
	if opts.CloseTimeout <= 0 {
		opts.CloseTimeout = 10 * time.Second
	}

	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd := exec.Command(prog, args...)
	cmd.Env = opts.Env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	// ssh must not outlive us: a crashed nbuild would otherwise leave a
	// session (and a remote nix-store) running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	startErr := cmd.Start()
	// The child holds its own copies of these ends.
	inR.Close()
	outW.Close()
	errW.Close()
	if startErr != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, &Error{Host: host, Err: startErr}
	}
	c := &Conn{
		host:       host,
		cmd:        cmd,
		stdin:      inW,
		stdout:     outR,
		tail:       newTailBuffer(opts.StderrTail),
		opts:       opts,
		stderrDone: make(chan struct{}),
		exited:     make(chan struct{}),
	}
	go c.copyStderr(errR)
	go func() {
		c.exitErr = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

func (c *Conn) copyStderr(r *os.File) {
	defer close(c.stderrDone)
	defer r.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			c.tail.Write(buf[:n])
			if c.opts.Stderr != nil {
				c.opts.Stderr.Write(buf[:n])
			}
		}
		if err != nil {
			return
		}
	}
}

// Host returns the host the session runs on.
func (c *Conn) Host() string { return c.host }

// Read reads from the remote command's stdout.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.stdout.Read(p)
	if err != nil && errors.Is(err, os.ErrClosed) {
		err = ErrClosed
	}
	return n, err
}

// Write writes to the remote command's stdin.
func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.stdin.Write(p)
	if err != nil && errors.Is(err, os.ErrClosed) {
		err = ErrClosed
	}
	return n, err
}

// CloseWrite closes the remote command's stdin (it sees EOF) and leaves
// its stdout open.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stdinShut {
		return nil
	}
	c.stdinShut = true
	return c.stdin.Close()
}

// StderrTail returns the last bytes the remote wrote to stderr. If ssh
// is exiting (for example after the remote command died, which the caller
// noticed as EOF on Read) it first waits briefly for ssh to finish, so the
// message explaining the exit is included.
func (c *Conn) StderrTail() string {
	select {
	case <-c.stderrDone:
	case <-time.After(2 * time.Second):
	}
	return c.tail.String()
}

// Err returns nil while ssh runs, and once it has exited an *Error
// describing a non-zero exit (with the stderr tail), or nil for a clean
// exit.
func (c *Conn) Err() error {
	select {
	case <-c.exited:
		return c.exitError()
	default:
		return nil
	}
}

func (c *Conn) exitError() error {
	<-c.exited
	c.mu.Lock()
	killed := c.killed
	c.mu.Unlock()
	if c.exitErr == nil || killed {
		return nil
	}
	// Give the stderr copier a moment: ssh has exited, so its pipe is at
	// EOF unless a grandchild still holds it.
	select {
	case <-c.stderrDone:
	case <-time.After(time.Second):
	}
	return &Error{Host: c.host, Stderr: c.tail.String(), Err: c.exitErr}
}

// Wait waits until ssh exits (the remote command ended or the link
// dropped) or ctx is done, and returns ssh's exit status as an *Error, or
// nil for a clean exit. It does not close stdin: use Close to end a
// session.
func (c *Conn) Wait(ctx context.Context) error {
	select {
	case <-c.exited:
		return c.exitError()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close ends the session cleanly: it closes the remote command's stdin,
// waits up to Options.CloseTimeout for ssh to exit, then kills ssh (only
// the ssh process Dial started). It returns ssh's failure, if it failed
// before being killed.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.CloseWrite()
		t := time.NewTimer(c.opts.CloseTimeout)
		defer t.Stop()
		select {
		case <-c.exited:
		case <-t.C:
			c.kill()
			<-c.exited
		}
		c.stdout.Close()
		select {
		case <-c.stderrDone:
		case <-time.After(time.Second):
			// A process started through ssh (e.g. a ControlMaster)
			// may hold the stderr pipe; stop waiting for it.
		}
		c.closeErr = c.exitError()
	})
	return c.closeErr
}

// Kill ends ssh at once, as a dropped link would.
func (c *Conn) Kill() {
	c.kill()
	<-c.exited
}

func (c *Conn) kill() {
	c.mu.Lock()
	select {
	case <-c.exited:
	default:
		c.killed = true
		c.cmd.Process.Kill()
	}
	c.mu.Unlock()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
	cut bool // bytes were dropped from the front
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	// Trim only when twice over, so trimming costs O(1) per byte.
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	cut := t.cut
	if len(b) > t.max {
		b = b[len(b)-t.max:]
		cut = true
	}
	if cut {
		// Start at a line boundary so the tail reads cleanly.
		if i := strings.IndexByte(string(b), '\n'); i >= 0 && i+1 < len(b) {
			b = b[i+1:]
		}
		return "…" + string(b)
	}
	return string(b)
}
