// Package daemon is a client for the nix-daemon worker protocol
// (2.8 src/libstore/remote-store.cc, daemon.cc, worker-protocol.hh) over any
// byte stream: the local unix socket, or `nix-daemon --stdio` run over ssh.
//
// Vocabulary:
//   - op: one request/reply exchange, named by its Op code. A Conn runs one
//     op at a time; a Pool holds several Conns for parallel ops.
//   - stderr loop: after each request the daemon sends log messages,
//     activities and results (delivered to Options.Logger), then either
//     STDERR_LAST, after which the op's reply follows, or STDERR_ERROR,
//     which becomes an *Error and leaves the connection usable.
//   - broken: a Conn whose stream is out of step with the daemon (an I/O
//     error, a malformed message, a cancelled context). Every later op on it
//     fails with an error wrapping ErrBroken; drop it and dial again.
//   - negotiated version: the minimum of what this client announces
//     (Options.Version, default 1.34 as Nix 2.8) and what the daemon speaks;
//     every message is encoded and decoded at it.
package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/nbuild/nbuild/nar/wire"
)

// Protocol versions are major<<8 | minor; major is always 1.
const (
	// DefaultVersion is what Nix 2.8 speaks (1.34).
	DefaultVersion = 1<<8 | 34
	// MaxVersion is the newest protocol this client can decode (1.38).
	MaxVersion = 1<<8 | 38
	// MinVersion is the oldest daemon protocol accepted (1.30, Nix 2.4):
	// older daemons want StorePathWithOutputs instead of DerivedPath strings.
	MinVersion = 1<<8 | 30
)

const (
	workerMagic1 = 0x6e697863
	workerMagic2 = 0x6478696f
)

// Sentinel errors.
var (
	// ErrBroken is wrapped by every op on a connection that can no longer be
	// used (see the package doc).
	ErrBroken = errors.New("daemon: connection broken")
	// ErrHandshake is wrapped when the peer does not speak the worker
	// protocol, or a version this client cannot use.
	ErrHandshake = errors.New("daemon: handshake failed")
	// ErrProtocol is wrapped when the daemon sends something the protocol
	// does not allow at that point.
	ErrProtocol = errors.New("daemon: protocol error")
)

// Trust is the daemon's opinion of this client, sent from protocol 1.35 on.
type Trust uint64

const (
	TrustUnknown Trust = iota // Nix < 2.15 does not say
	Trusted
	NotTrusted
)

// Options configure a connection. The zero value announces protocol 1.34,
// sends SetOptions with default Settings and discards log messages.
type Options struct {
	// Version is the protocol version announced, between MinVersion and
	// MaxVersion; 0 means DefaultVersion.
	Version uint64
	// Logger receives log lines, activities and results; nil discards them.
	Logger Logger
	// SkipSetOptions leaves the daemon's settings as they are.
	SkipSetOptions bool
	// Settings are sent with SetOptions after the handshake.
	Settings Settings
	// MaxString bounds every string the daemon sends (log lines, error
	// messages, paths); 0 means 16 MiB.
	MaxString uint64
	// MaxList bounds every list count; 0 means 1<<20.
	MaxList uint64
}

// Conn is one connection to a nix-daemon. Its methods may be called from
// several goroutines, but ops run one at a time; use a Pool for parallel
// ops. Close releases the stream and makes a running op fail.
type Conn struct {
	mu  sync.Mutex // held for the whole of an op
	rwc io.ReadWriteCloser
	br  *bufio.Reader
	r   *wire.Reader
	bw  *bufio.Writer
	buf []byte // request scratch

	logger  Logger
	base    Logger // Options.Logger, which SetLogger(nil) restores
	version uint64 // negotiated
	daemon  uint64 // the daemon's own version
	nixVer  string
	trust   Trust

	bmu    sync.Mutex // guards broken, so Close and Err never wait for an op
	broken error      // sticky, wraps ErrBroken
}

// Dial connects to the daemon listening on the unix socket at socketPath
// and performs the handshake. It retries a full listen backlog as a
// Dialer with default limits does.
func Dial(ctx context.Context, socketPath string, opts Options) (*Conn, error) {
	d := Dialer{Socket: socketPath, Options: opts}
	return d.Dial(ctx)
}

// Dialer connects to a daemon's unix socket. A connect that fails with
// EAGAIN (the listen backlog is full: Nix 2.8.0's daemon listens with a
// backlog of 5 and accepts one connection at a time, NIX-PROTOCOLS.md
// §15.4) or ECONNREFUSED (the daemon is restarting) is tried again after
// a capped exponential backoff, within MaxWait and ctx. Its Dial method
// fits NewPool.
type Dialer struct {
	// Socket is the socket's path.
	Socket string
	// Options configure each connection.
	Options Options
	// MaxWait bounds the time spent waiting between retries; 0 means
	// 10 s, negative means no retry.
	MaxWait time.Duration
	// DialContext, when set, makes the stream instead of a net.Dialer
	// (network "unix"); a wrapper may count or trace connections.
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)
	// Retried, when set, is called with each retried connect error
	// before the wait.
	Retried func(err error)
}

// Retry backoff of Dialer: the first wait, and the largest one.
const (
	dialBackoff    = 2 * time.Millisecond
	dialMaxBackoff = 250 * time.Millisecond
)

// Dial connects and performs the handshake.
func (d *Dialer) Dial(ctx context.Context) (*Conn, error) {
	nc, err := d.connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	return NewConn(ctx, nc, d.Options)
}

func (d *Dialer) connect(ctx context.Context) (net.Conn, error) {
	dial := d.DialContext
	if dial == nil {
		var nd net.Dialer
		dial = nd.DialContext
	}
	maxWait := d.MaxWait
	if maxWait == 0 {
		maxWait = 10 * time.Second
	}
	var waited time.Duration
	backoff := dialBackoff
	for {
		nc, err := dial(ctx, "unix", d.Socket)
		if err == nil || ctx.Err() != nil || waited >= maxWait ||
			!errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.ECONNREFUSED) {
			return nc, err
		}
		if d.Retried != nil {
			d.Retried(err)
		}
		// Jitter spreads the retries of many dials that failed together.
		wait := min(backoff/2+rand.N(backoff/2+1), maxWait-waited)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
		waited += wait
		backoff = min(2*backoff, dialMaxBackoff)
	}
}

// NewConn performs the handshake over rw, which the Conn then owns: Close
// (and a failed handshake) closes it. rw may be a net.Conn, or the
// stdin/stdout of `nix-daemon --stdio`.
func NewConn(ctx context.Context, rw io.ReadWriteCloser, opts Options) (*Conn, error) {
	ver := opts.Version
	if ver == 0 {
		ver = DefaultVersion
	}
	if ver < MinVersion || ver > MaxVersion {
		rw.Close()
		return nil, fmt.Errorf("%w: cannot announce protocol %s (supported %s to %s)",
			ErrHandshake, versionString(ver), versionString(MinVersion), versionString(MaxVersion))
	}
	maxString := opts.MaxString
	if maxString == 0 {
		maxString = 16 << 20
	}
	c := &Conn{
		rwc:     rw,
		br:      bufio.NewReaderSize(rw, 64<<10),
		bw:      bufio.NewWriterSize(rw, 64<<10),
		logger:  opts.Logger,
		version: ver,
	}
	c.r = wire.NewReader(c.br)
	c.r.MaxString = maxString
	c.r.MaxList = opts.MaxList
	if c.logger == nil {
		c.logger = discard{}
	}
	c.base = c.logger
	stop := c.watch(ctx)
	err := c.handshake(ver)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		c.rwc.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", ErrHandshake, ctx.Err())
		}
		return nil, err
	}
	if !opts.SkipSetOptions {
		if err := c.SetOptions(ctx, &opts.Settings); err != nil {
			c.rwc.Close()
			return nil, err
		}
	}
	return c, nil
}

// handshake mirrors 2.8 remote-store.cc RemoteStore::initConnection.
func (c *Conn) handshake(ver uint64) error {
	fail := func(err error) error {
		if errors.Is(err, ErrHandshake) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	// Below 1.38 nothing the client sends depends on the daemon's answer, so
	// the whole greeting goes out at once: one round trip over ssh.
	c.buf = appendGreeting(c.buf[:0], ver)
	if err := c.send(); err != nil {
		return fail(err)
	}
	magic, err := c.r.ReadUint64()
	if err != nil {
		return fail(err)
	}
	if magic != workerMagic2 {
		return fmt.Errorf("%w: bad magic %#x from daemon (not a nix-daemon?)", ErrHandshake, magic)
	}
	dv, err := c.r.ReadUint64()
	if err != nil {
		return fail(err)
	}
	c.daemon = dv
	if dv>>8 != 1 || dv < MinVersion {
		return fmt.Errorf("%w: daemon speaks protocol %s, need at least %s", ErrHandshake, versionString(dv), versionString(MinVersion))
	}
	c.version = min(ver, dv)
	if ver >= 1<<8|38 {
		if c.version >= 1<<8|38 {
			// Feature sets: this client asks for none, so the intersection is
			// empty and every message keeps its pre-feature encoding.
			c.buf = wire.AppendStrings(c.buf[:0], nil)
			if err := c.send(); err != nil {
				return fail(err)
			}
			feats, err := c.r.ReadStrings()
			if err != nil {
				return fail(err)
			}
			_ = feats // daemon's offer; intersection with ours is empty
		}
		c.buf = appendObsolete(c.buf[:0])
		if err := c.send(); err != nil {
			return fail(err)
		}
	}
	if c.version >= 1<<8|33 {
		if c.nixVer, err = c.r.ReadString(); err != nil {
			return fail(err)
		}
	}
	if c.version >= 1<<8|35 {
		t, err := c.r.ReadUint64()
		if err != nil {
			return fail(err)
		}
		if t > uint64(NotTrusted) {
			return fmt.Errorf("%w: invalid trust value %d", ErrHandshake, t)
		}
		c.trust = Trust(t)
	}
	if _, err := c.processStderr(opHandshake, nil); err != nil {
		return fail(err)
	}
	return nil
}

// appendObsolete appends the CPU-affinity and reserveSpace fields that
// every client since 1.14 sends as zero.
func appendObsolete(b []byte) []byte {
	b = wire.AppendUint64(b, 0)
	return wire.AppendUint64(b, 0)
}

// GreetingLen is the number of bytes NewConn sends before it waits for
// the daemon's first reply when announcing version (below 1.38: magic,
// version, and two obsolete fields). A transport that must know where the
// interactive part of a session ends (see AddFlags.EndInput) uses it; with
// SkipSetOptions nothing else is sent until the first operation.
func GreetingLen(version uint64) int {
	if version == 0 {
		version = DefaultVersion
	}
	return len(appendGreeting(nil, version))
}

func appendGreeting(b []byte, ver uint64) []byte {
	b = wire.AppendUint64(b, workerMagic1)
	b = wire.AppendUint64(b, ver)
	if ver < 1<<8|38 {
		b = appendObsolete(b)
	}
	return b
}

// SetLogger makes l receive the log messages of the ops that follow, for
// a pooled connection whose ops belong to different builds; nil restores
// Options.Logger. It waits for a running op to end.
func (c *Conn) SetLogger(l Logger) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l == nil {
		l = c.base
	}
	c.logger = l
}

// Version returns the negotiated protocol version.
func (c *Conn) Version() uint64 { return c.version }

// DaemonVersion returns the protocol version the daemon announced.
func (c *Conn) DaemonVersion() uint64 { return c.daemon }

// NixVersion returns the daemon's Nix version ("2.8.0"), or "" when the
// protocol does not carry it.
func (c *Conn) NixVersion() string { return c.nixVer }

// Trust returns what the daemon said about this client (protocol ≥ 1.35).
func (c *Conn) Trust() Trust { return c.trust }

// Err returns the error that broke the connection, or nil.
func (c *Conn) Err() error {
	return c.brokenErr()
}

func (c *Conn) brokenErr() error {
	c.bmu.Lock()
	defer c.bmu.Unlock()
	return c.broken
}

// breakWith marks the connection broken (keeping the first reason) and
// returns the reason.
func (c *Conn) breakWith(err error) error {
	c.bmu.Lock()
	defer c.bmu.Unlock()
	if c.broken == nil {
		c.broken = err
	}
	return c.broken
}

// Close closes the stream. Ops running concurrently fail.
func (c *Conn) Close() error {
	c.breakWith(fmt.Errorf("%w: closed", ErrBroken))
	return c.rwc.Close()
}

// watch closes the stream when ctx is cancelled: the only way to interrupt
// a blocked read on an arbitrary io.Reader. The returned stop reports
// whether the op finished before that happened.
func (c *Conn) watch(ctx context.Context) (stop func() bool) {
	if ctx.Done() == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(ctx, func() { c.rwc.Close() })
}

// send writes c.buf and flushes.
func (c *Conn) send() error {
	if _, err := c.bw.Write(c.buf); err != nil {
		return err
	}
	return c.bw.Flush()
}

func versionString(v uint64) string {
	return fmt.Sprintf("%d.%d", v>>8, v&0xff)
}

// has reports whether the negotiated protocol is at least 1.minor.
func (c *Conn) has(minor uint64) bool { return c.version >= 1<<8|minor }
