// Package serve is a client for `nix-store --serve [--write]`, the protocol
// behind Nix's legacy ssh:// stores, nix-copy-closure and ssh:// remote
// builders (2.8 src/nix-store/nix-store.cc opServe,
// src/libstore/serve-protocol.hh, legacy-ssh-store.cc).
//
// Vocabulary:
//   - server: the remote `nix-store --serve` process; it reads commands
//     from its stdin and answers on its stdout, one after another, with no
//     error frames. On any error it prints to its stderr and exits, so the
//     client sees end-of-file; the server's stderr (available when the
//     transport offers StderrTail, as store/ssh.Conn does) says why.
//   - version: major<<8 | minor. nbuild announces 2.7 (0x207), which is what
//     Nix 2.4 to 2.34 speak; a 2.8 server gates features on the client's
//     number, and writes BuildDerivation's builtOutputs whatever the client
//     announced, which 2.7 expects (§6.4).
//   - pipelining: the server handles requests strictly in order, so many
//     requests may be sent before their replies are read. AddToStoreNars
//     uses it to upload paths without a round trip per path.
//
// A Client owns one server: operations are serialised, and an error leaves
// it broken (the stream is out of step or the server is gone); Store
// replaces broken clients by dialling again.
package serve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/nbuild/nbuild/nar/wire"
)

// Protocol constants (2.8 src/libstore/serve-protocol.hh).
const (
	magic1 = 0x390c9deb
	magic2 = 0x5452eecb

	// ClientVersion is the version nbuild announces: 2.7.
	ClientVersion = 0x207
)

// Commands (2.8 serve-protocol.hh ServeCommand).
const (
	cmdQueryValidPaths = 1
	cmdQueryPathInfos  = 2
	cmdDumpStorePath   = 3
	cmdImportPaths     = 4
	cmdExportPaths     = 5
	cmdBuildPaths      = 6
	cmdQueryClosure    = 7
	cmdBuildDerivation = 8
	cmdAddToStoreNar   = 9
)

var (
	// ErrProtocolMismatch is wrapped when the peer does not answer the
	// handshake as a `nix-store --serve` does (often: a login shell
	// printed something on stdout first).
	ErrProtocolMismatch = errors.New("serve: protocol mismatch")
	// ErrUnsupportedVersion is wrapped when the server's protocol major
	// version is not 2, or an operation needs a newer minor version.
	ErrUnsupportedVersion = errors.New("serve: unsupported protocol version")
	// ErrProtocol is wrapped when the server's reply is malformed.
	ErrProtocol = errors.New("serve: protocol error")
	// ErrCannotConnect is wrapped when the peer closed the stream before
	// answering the handshake (ssh failed, or the remote command did not
	// start); the error's Stderr usually says why.
	ErrCannotConnect = errors.New("serve: cannot connect")
	// ErrBroken is wrapped by operations on a client whose stream failed
	// earlier.
	ErrBroken = errors.New("serve: connection unusable after an earlier error")
)

// StderrTailer is implemented by transports that keep the remote's stderr
// (store/ssh.Conn); its tail explains why a server quit.
type StderrTailer interface {
	StderrTail() string
}

// Options configure NewClient. The zero value is usable.
type Options struct {
	// Remote names the server in errors, e.g. "ssh://root@host"; ""
	// means the transport's Host() if it has one, else "remote".
	Remote string
	// MaxInFlightBytes bounds the NAR bytes AddToStoreNars sends ahead
	// of the server's acknowledgements; 0 means 64 MiB. A path larger
	// than the bound is sent alone.
	MaxInFlightBytes int64
}

// Client speaks the serve protocol over one byte stream.
type Client struct {
	mu      sync.Mutex
	rw      io.ReadWriter
	br      *bufio.Reader
	r       *wire.Reader
	w       *bufio.Writer
	buf     []byte
	remote  string
	opts    Options
	version uint64 // the server's
	broken  error
}

// NewClient performs the handshake on rw and returns a client. If rw is
// an io.Closer, the client closes it on Close, on a failed operation, and
// when an operation's context is cancelled (the only way to interrupt a
// blocked read).
func NewClient(ctx context.Context, rw io.ReadWriter, opts Options) (*Client, error) {
	c := &Client{
		rw:   rw,
		br:   bufio.NewReaderSize(rw, 64<<10),
		w:    bufio.NewWriterSize(rw, 64<<10),
		opts: opts,
	}
	c.r = wire.NewReader(c.br)
	// Replies hold store paths, hashes, signatures and error messages:
	// 1 MiB bounds each with room to spare.
	c.r.MaxString = 1 << 20
	c.remote = opts.Remote
	if c.remote == "" {
		if h, ok := rw.(interface{ Host() string }); ok {
			c.remote = h.Host()
		} else {
			c.remote = "remote"
		}
	}
	err := c.do(ctx, "handshake", c.handshake)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) handshake() error {
	b := wire.AppendUint64(c.buf[:0], magic1)
	b = wire.AppendUint64(b, ClientVersion)
	if err := c.send(b); err != nil {
		// The remote command already exited (broken pipe).
		return fmt.Errorf("%w: %v", ErrCannotConnect, err)
	}
	var got [8]byte
	if _, err := io.ReadFull(c.br, got[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) && !isMagic2Prefix(got[:]) {
			return mismatch(got[:], c.br)
		}
		if err == io.EOF {
			return fmt.Errorf("%w: the remote closed the connection", ErrCannotConnect)
		}
		return err
	}
	if le64(got[:]) != magic2 {
		return mismatch(got[:], c.br)
	}
	v, err := c.r.ReadUint64()
	if err != nil {
		return err
	}
	if v>>8 != 2 {
		return fmt.Errorf("%w: server speaks %d.%d", ErrUnsupportedVersion, v>>8, v&0xff)
	}
	c.version = v
	return nil
}

func isMagic2Prefix(b []byte) bool {
	var m [8]byte
	wire.AppendUint64(m[:0], magic2)
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	return n == 0 || string(b[:n]) == string(m[:n])
}

// mismatch reports what the peer sent instead of the magic: the bytes read
// plus whatever is already buffered up to the end of the line, as Nix
// shows it ("protocol mismatch from HOST, got 'Welcome to…'"). It never
// blocks for more input.
func mismatch(got []byte, br *bufio.Reader) error {
	s := strings.TrimRight(string(got), "\x00")
	if !strings.Contains(s, "\n") {
		n := min(br.Buffered(), 200)
		more, _ := br.Peek(n)
		if i := strings.IndexByte(string(more), '\n'); i >= 0 {
			more = more[:i]
		}
		s += string(more)
	}
	s, _, _ = strings.Cut(s, "\n")
	return fmt.Errorf("%w, got '%s'", ErrProtocolMismatch, strings.TrimSpace(s))
}

func le64(b []byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// ServerVersion returns the version the server announced.
func (c *Client) ServerVersion() uint64 { return c.version }

// proto returns the version both sides speak: min(ours, server's).
func (c *Client) proto() uint64 { return min(uint64(ClientVersion), c.version) }

func (c *Client) minor() uint64 { return c.proto() & 0xff }

// Remote returns the name used for the server in errors.
func (c *Client) Remote() string { return c.remote }

// Close ends the session: the transport is closed if it is an io.Closer
// (for an ssh.Conn that closes the server's stdin, and it exits).
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil {
		c.broken = errors.New("serve: client closed")
	}
	if cl, ok := c.rw.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// Broken reports the error that made the client unusable, or nil.
func (c *Client) Broken() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.broken
}

// OpError is a failed operation. Stderr holds the tail of the remote's
// stderr when the transport keeps it and the failure ended the session.
type OpError struct {
	Op     string
	Remote string
	Err    error
	Stderr string
}

func (e *OpError) Error() string {
	// Our sentinels carry the package prefix already.
	inner := strings.TrimPrefix(e.Err.Error(), "serve: ")
	msg := fmt.Sprintf("serve: %s on %s: %s", e.Op, e.Remote, inner)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += "; remote stderr: " + s
	}
	return msg
}

func (e *OpError) Unwrap() error { return e.Err }

// do runs one operation under the client's lock. Any error breaks the
// client: the server either quit or the stream is out of step.
func (c *Client) do(ctx context.Context, op string, f func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return &OpError{Op: op, Remote: c.remote, Err: fmt.Errorf("%w: %v", ErrBroken, c.broken)}
	}
	if err := ctx.Err(); err != nil {
		return &OpError{Op: op, Remote: c.remote, Err: err}
	}
	stop := func() bool { return true }
	if cl, ok := c.rw.(io.Closer); ok {
		stop = context.AfterFunc(ctx, func() { cl.Close() })
	}
	err := f()
	if !stop() {
		// The context fired and closed the transport under f.
		if err == nil {
			err = ctx.Err()
		} else {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
	}
	if err == nil {
		return nil
	}
	c.broken = err
	oe := &OpError{Op: op, Remote: c.remote, Err: err}
	if cl, ok := c.rw.(io.Closer); ok {
		// Closing first lets the remote's last words reach the tail.
		cl.Close()
	}
	if st, ok := c.rw.(StderrTailer); ok && ctx.Err() == nil {
		oe.Stderr = lastLines(st.StderrTail(), 20)
	}
	return oe
}

// send writes b and flushes.
func (c *Client) send(b []byte) error {
	c.buf = b[:0]
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	return c.w.Flush()
}

func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
