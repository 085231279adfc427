package daemon_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/storetest"
)

// backlogDaemon starts a real nix-daemon (on the machine's store) through
// socket activation on a socket of its own whose listen backlog is 1, and
// stops it (SIGSTOP) before it accepts anything: connects beyond the
// backlog fail with EAGAIN, as they do under load against Nix 2.8.0's
// backlog of 5. It returns the socket and a function that lets the
// daemon run.
func backlogDaemon(t *testing.T) (socket string, resume func()) {
	t.Helper()
	storetest.RequireRoot(t)
	storetest.RequireNix(t)
	socket = filepath.Join(t.TempDir(), "socket")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close() // the daemon holds its own copy
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: socket}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	// 2.8 daemon.cc daemonLoop takes fd 3 when LISTEN_PID is its pid.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec nix-daemon`)
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	resume = func() { once.Do(func() { cmd.Process.Signal(syscall.SIGCONT) }) }
	t.Cleanup(func() {
		resume()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return socket, resume
}

// TestDialRetriesFullBacklog dials 16 connections at once to a daemon
// whose backlog holds 2 pending connects. Without retries most fail with
// EAGAIN (the failure of issue 14); with them all complete the handshake
// once the daemon accepts.
func TestDialRetriesFullBacklog(t *testing.T) {
	socket, resume := backlogDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// One connect each, as Nix 2.8's client makes, while the daemon
	// accepts nothing: the backlog overflows.
	var err error
	for i := 0; i < 4; i++ {
		var nc net.Conn
		if nc, err = net.Dial("unix", socket); err != nil {
			break
		}
		defer nc.Close()
	}
	if !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("connects beyond a stopped daemon's backlog: %v, want EAGAIN", err)
	}

	var retried atomic.Int64
	d := daemon.Dialer{Socket: socket, Retried: func(err error) {
		if !errors.Is(err, syscall.EAGAIN) {
			t.Errorf("retried %v", err)
		}
		// The backlog is full: only now may the daemon go on.
		retried.Add(1)
		resume()
	}}
	var wg sync.WaitGroup
	conns := make([]*daemon.Conn, 16)
	errs := make([]error, 16)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns[i], errs[i] = d.Dial(ctx)
		}()
	}
	wg.Wait()
	for i, c := range conns {
		if errs[i] != nil {
			t.Errorf("dial %d: %v", i, errs[i])
			continue
		}
		if c.NixVersion() == "" && c.Version() < 1<<8|33 {
			t.Errorf("dial %d: no handshake", i)
		}
		if _, err := c.QueryValidPaths(ctx, nil, false); err != nil {
			t.Errorf("conn %d: %v", i, err)
		}
		c.Close()
	}
	if retried.Load() == 0 {
		t.Errorf("no connect was retried; the test proves nothing")
	}
	t.Logf("%d connects retried", retried.Load())
}

// TestDialRetryHonoursContext gives up waiting for a daemon that never
// accepts when ctx ends.
func TestDialRetryHonoursContext(t *testing.T) {
	socket, _ := backlogDaemon(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n atomic.Int64
	d := daemon.Dialer{Socket: socket, MaxWait: time.Hour, Retried: func(error) {
		if n.Add(1) == 3 {
			cancel()
		}
	}}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Pending connects that fit the backlog hang in the
			// handshake until ctx ends; the others in the retry loop.
			if c, err := d.Dial(ctx); err == nil {
				c.Close()
			} else {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 8 {
		t.Errorf("%d of 8 dials failed after cancellation, want all", failed.Load())
	}
}
