package serve

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/ssh"
)

// DialOptions configure Dial.
type DialOptions struct {
	// SSH configures the ssh transport.
	SSH ssh.Options
	// Program is the remote command; "" means "nix-store".
	Program string
	// RemoteStore, when set, is passed as --store (e.g. "local?root=/x").
	RemoteStore string
	// ReadOnly omits --write: the server then refuses uploads and builds
	// and ignores lock and substitute.
	ReadOnly bool
	// Client configures the serve client.
	Client Options
}

// Dial runs `nix-store --serve --write` on host ("[user@]host") over ssh
// and returns a client after the handshake. Closing the client ends the
// ssh session.
func Dial(ctx context.Context, host string, opts DialOptions) (*Client, error) {
	cmd := RemoteCommand(opts)
	conn, err := ssh.Dial(ctx, host, cmd, opts.SSH)
	if err != nil {
		return nil, err
	}
	if opts.Client.Remote == "" {
		opts.Client.Remote = "ssh://" + host
	}
	c, err := NewClient(ctx, conn, opts.Client)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// RemoteCommand returns the command Dial runs on the remote host.
func RemoteCommand(opts DialOptions) []string {
	prog := opts.Program
	if prog == "" {
		prog = "nix-store"
	}
	cmd := []string{prog, "--serve"}
	if !opts.ReadOnly {
		cmd = append(cmd, "--write")
	}
	if opts.RemoteStore != "" {
		cmd = append(cmd, "--store", opts.RemoteStore)
	}
	return cmd
}

// Store is a store reached through `nix-store --serve`: it dials a server
// when it needs one and dials again after a failure, since a serve server
// quits on any error (an invalid path, a rejected upload). Operations are
// serialised over one connection.
type Store struct {
	dial func(ctx context.Context) (*Client, error)

	mu     sync.Mutex
	c      *Client
	closed bool
}

var _ interface {
	store.ValidPathQuerier
	store.PathInfoQuerier
	store.NarReader
	store.NarAdder
} = (*Store)(nil)

// ErrStoreClosed is returned by a closed Store.
var ErrStoreClosed = errors.New("serve: store closed")

// NewStore returns a Store that opens connections with dial.
func NewStore(dial func(ctx context.Context) (*Client, error)) *Store {
	return &Store{dial: dial}
}

// with runs f on the current client (dialling one first if needed) and
// drops the client if f left it broken.
func (s *Store) with(ctx context.Context, f func(c *Client) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrStoreClosed
	}
	if s.c == nil {
		c, err := s.dial(ctx)
		if err != nil {
			return err
		}
		s.c = c
	}
	err := f(s.c)
	if s.c.Broken() != nil {
		s.c.Close()
		s.c = nil
	}
	return err
}

// Client runs f with the store's current client, for operations Store
// does not wrap (BuildDerivation, QueryClosure, AddToStoreNars).
func (s *Store) Client(ctx context.Context, f func(c *Client) error) error {
	return s.with(ctx, f)
}

// QueryValidPaths implements store.ValidPathQuerier.
func (s *Store) QueryValidPaths(ctx context.Context, paths []store.Path, substitute bool) (out []store.Path, err error) {
	err = s.with(ctx, func(c *Client) error {
		out, err = c.QueryValidPaths(ctx, paths, substitute)
		return err
	})
	return out, err
}

// QueryPathInfo implements store.PathInfoQuerier.
func (s *Store) QueryPathInfo(ctx context.Context, p store.Path) (info *store.PathInfo, err error) {
	err = s.with(ctx, func(c *Client) error {
		info, err = c.QueryPathInfo(ctx, p)
		return err
	})
	return info, err
}

// QueryPathInfos is Client.QueryPathInfos.
func (s *Store) QueryPathInfos(ctx context.Context, paths []store.Path) (infos []*store.PathInfo, err error) {
	err = s.with(ctx, func(c *Client) error {
		infos, err = c.QueryPathInfos(ctx, paths)
		return err
	})
	return infos, err
}

// NarFromPath implements store.NarReader.
func (s *Store) NarFromPath(ctx context.Context, p store.Path, w io.Writer) error {
	return s.with(ctx, func(c *Client) error { return c.NarFromPath(ctx, p, w) })
}

// AddToStoreNar implements store.NarAdder.
func (s *Store) AddToStoreNar(ctx context.Context, info *store.PathInfo, nar io.Reader) error {
	return s.with(ctx, func(c *Client) error { return c.AddToStoreNar(ctx, info, nar) })
}

// Close closes the current connection; later operations fail.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.c != nil {
		err := s.c.Close()
		s.c = nil
		return err
	}
	return nil
}
