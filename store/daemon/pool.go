package daemon

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/nbuild/nbuild/store"
)

var (
	_ store.ValidPathQuerier = (*Pool)(nil)
	_ store.PathInfoQuerier  = (*Pool)(nil)
	_ store.NarReader        = (*Pool)(nil)
	_ store.NarAdder         = (*Pool)(nil)
)

// Pool holds up to size connections to one daemon and runs each op on an
// idle one, dialling lazily; broken connections are dropped. Acquire waits
// for a free slot or for ctx. One Pool per daemon, shared by everything
// that talks to it, bounds the connections the daemon sees (each costs it
// a process).
type Pool struct {
	dial func(ctx context.Context) (*Conn, error)
	sem  chan struct{}

	mu     sync.Mutex
	idle   []*Conn
	closed bool
}

// NewPool returns a pool of at most size connections made by dial
// (for example a Dial of the local socket, or a NewConn over ssh).
func NewPool(size int, dial func(ctx context.Context) (*Conn, error)) *Pool {
	if size < 1 {
		size = 1
	}
	return &Pool{dial: dial, sem: make(chan struct{}, size)}
}

// ErrPoolClosed is returned by Acquire after Close.
var ErrPoolClosed = fmt.Errorf("daemon: pool closed")

// Acquire returns an idle connection or dials a new one; the caller must
// Release it.
func (p *Pool) Acquire(ctx context.Context) (*Conn, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.sem
		return nil, ErrPoolClosed
	}
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	c, err := p.dial(ctx)
	if err != nil {
		<-p.sem
		return nil, err
	}
	return c, nil
}

// Release returns c to the pool, or closes it when it is broken or the
// pool is closed. A logger set with SetLogger is reset.
func (p *Pool) Release(c *Conn) {
	if c.Err() == nil {
		c.SetLogger(nil)
	}
	p.mu.Lock()
	if p.closed || c.Err() != nil {
		p.mu.Unlock()
		c.Close()
	} else {
		p.idle = append(p.idle, c)
		p.mu.Unlock()
	}
	<-p.sem
}

// Close closes the idle connections; connections in use are closed when
// they are released.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
	return nil
}

// with runs f on a pooled connection.
func (p *Pool) with(ctx context.Context, f func(c *Conn) error) error {
	c, err := p.Acquire(ctx)
	if err != nil {
		return err
	}
	defer p.Release(c)
	return f(c)
}

func (p *Pool) QueryValidPaths(ctx context.Context, paths []store.Path, substitute bool) (valid []store.Path, err error) {
	err = p.with(ctx, func(c *Conn) error {
		valid, err = c.QueryValidPaths(ctx, paths, substitute)
		return err
	})
	return valid, err
}

func (p *Pool) QueryPathInfo(ctx context.Context, path store.Path) (info *store.PathInfo, err error) {
	err = p.with(ctx, func(c *Conn) error {
		info, err = c.QueryPathInfo(ctx, path)
		return err
	})
	return info, err
}

func (p *Pool) NarFromPath(ctx context.Context, path store.Path, w io.Writer) error {
	return p.with(ctx, func(c *Conn) error { return c.NarFromPath(ctx, path, w) })
}

func (p *Pool) AddToStoreNar(ctx context.Context, info *store.PathInfo, nar io.Reader) error {
	return p.with(ctx, func(c *Conn) error { return c.AddToStoreNar(ctx, info, nar) })
}
