package serve_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/serve"
	"github.com/nbuild/nbuild/store/storetest"
	"github.com/nbuild/nbuild/store/testhost"
)

// procConn runs a local process as the transport (no ssh): stdin and
// stdout carry the protocol, stderr is kept for StderrTail.
type procConn struct {
	cmd    *exec.Cmd
	stdin  *os.File
	stdout *os.File
	stderr syncBuffer
	exited chan struct{}
	once   sync.Once
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startProc(t testing.TB, args ...string) *procConn {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &procConn{stdin: inW, stdout: outR, exited: make(chan struct{})}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = inR, outW, &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.Close() })
	return p
}

func (p *procConn) Read(b []byte) (int, error)  { return p.stdout.Read(b) }
func (p *procConn) Write(b []byte) (int, error) { return p.stdin.Write(b) }

func (p *procConn) Close() error {
	p.once.Do(func() {
		p.stdin.Close()
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
		p.stdout.Close()
	})
	return nil
}

func (p *procConn) Kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

func (p *procConn) StderrTail() string {
	select {
	case <-p.exited:
	case <-time.After(2 * time.Second):
	}
	return p.stderr.String()
}

func (p *procConn) Host() string { return "local " + p.cmd.Args[0] }

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// chrootServer starts `nix-store --serve --write` on a new chroot store
// and returns a client and the store's root.
func chrootServer(t testing.TB) (*serve.Client, string) {
	t.Helper()
	storetest.RequireNix(t)
	storetest.RequireRoot(t)
	root := t.TempDir()
	c := newClient(t, startProc(t, "nix-store", "--serve", "--write", "--store", "local?root="+root))
	return c, root
}

// machineServer starts a read-only `nix-store --serve` on this machine's
// own store.
func machineServer(t testing.TB) *serve.Client {
	t.Helper()
	storetest.RequireNix(t)
	storetest.RequireRoot(t)
	return newClient(t, startProc(t, "nix-store", "--serve"))
}

func newClient(t testing.TB, p *procConn) *serve.Client {
	t.Helper()
	c, err := serve.NewClient(ctxT(t), p, serve.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sshServer dials `nix-store --serve --write` on a test host.
func sshServer(t testing.TB, h *testhost.Host, port int) *serve.Client {
	t.Helper()
	c, err := serve.Dial(ctxT(t), h.Addr, sshOpts(h, port))
	if err != nil {
		t.Fatalf("%v\nsshd log:\n%s", err, h.SSHLog())
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func sshOpts(h *testhost.Host, port int) serve.DialOptions {
	var o serve.DialOptions
	o.SSH.Getenv = h.GetenvPort(port)
	return o
}

// nixStore runs nix-store with args and returns its stdout.
func nixStore(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("nix-store", args...).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("nix-store %s: %v: %s", strings.Join(args, " "), err, msg)
	}
	return string(out)
}

// chain makes n new objects, each referring to the one before.
func chain(t testing.TB, n int, prefix string) []*storetest.Object {
	var objs []*storetest.Object
	for i := range n {
		var refs []store.Path
		if i > 0 {
			refs = []store.Path{objs[i-1].Info.Path}
		}
		objs = append(objs, storetest.NewObject(t, prefix+"-"+strings.Repeat("x", i%3)+strconv.Itoa(i), refs))
	}
	return objs
}

func sources(objs []*storetest.Object) []serve.NarSource {
	srcs := make([]serve.NarSource, len(objs))
	for i, o := range objs {
		srcs[i] = serve.NarSource{Info: o.Info, WriteNAR: func(w io.Writer) error {
			_, err := w.Write(o.NAR)
			return err
		}}
	}
	return srcs
}
