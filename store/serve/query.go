package serve

import (
	"context"
	"fmt"
	"slices"

	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
)

var _ interface {
	store.ValidPathQuerier
	store.PathInfoQuerier
	store.NarReader
	store.NarAdder
} = (*Client)(nil)

func appendPaths(b []byte, ps []store.Path) []byte {
	b = wire.AppendUint64(b, uint64(len(ps)))
	for _, p := range ps {
		b = wire.AppendString(b, p.String())
	}
	return b
}

// QueryValidPaths returns those of paths that are valid on the server.
// With substitute, a --write server first tries to substitute the missing
// ones from its substituters.
func (c *Client) QueryValidPaths(ctx context.Context, paths []store.Path, substitute bool) ([]store.Path, error) {
	return c.QueryValidPathsLock(ctx, paths, false, substitute)
}

// QueryValidPathsLock is QueryValidPaths that can also lock: with lock, a
// --write server adds temporary GC roots for the valid paths, held until
// the session ends (2.8 opServe cmdQueryValidPaths).
func (c *Client) QueryValidPathsLock(ctx context.Context, paths []store.Path, lock, substitute bool) ([]store.Path, error) {
	var out []store.Path
	err := c.do(ctx, "QueryValidPaths", func() error {
		b := wire.AppendUint64(c.buf[:0], cmdQueryValidPaths)
		b = wire.AppendBool(b, lock)
		b = wire.AppendBool(b, substitute)
		if err := c.send(appendPaths(b, paths)); err != nil {
			return err
		}
		var err error
		out, err = readPaths(c.r, "valid path")
		return err
	})
	return out, err
}

// QueryPathInfos returns what the server knows about those of paths that
// are valid there, in one round trip, in the order of paths (the server
// answers in its own order). Invalid paths are left out.
// RegistrationTime and Ultimate are not part of this protocol.
func (c *Client) QueryPathInfos(ctx context.Context, paths []store.Path) ([]*store.PathInfo, error) {
	var out []*store.PathInfo
	err := c.do(ctx, "QueryPathInfos", func() error {
		b := wire.AppendUint64(c.buf[:0], cmdQueryPathInfos)
		if err := c.send(appendPaths(b, paths)); err != nil {
			return err
		}
		var err error
		out, err = readPathInfos(c.r, c.minor(), len(paths))
		return err
	})
	if err != nil {
		return nil, err
	}
	return inQueryOrder(out, paths), nil
}

// inQueryOrder sorts infos into the order of paths; duplicates in paths
// get one entry.
func inQueryOrder(infos []*store.PathInfo, paths []store.Path) []*store.PathInfo {
	rank := make(map[store.Path]int, len(paths))
	for i, p := range paths {
		if _, ok := rank[p]; !ok {
			rank[p] = i
		}
	}
	slices.SortStableFunc(infos, func(a, b *store.PathInfo) int { return rank[a.Path] - rank[b.Path] })
	return infos
}

// QueryPathInfo returns the PathInfo of p, or an error wrapping
// store.ErrNotValid.
func (c *Client) QueryPathInfo(ctx context.Context, p store.Path) (*store.PathInfo, error) {
	infos, err := c.QueryPathInfos(ctx, []store.Path{p})
	if err != nil {
		return nil, err
	}
	for _, info := range infos {
		if info.Path == p {
			return info, nil
		}
	}
	return nil, fmt.Errorf("serve: %s on %s: %w", p, c.remote, store.ErrNotValid)
}

// QueryClosure returns the closure of paths on the server; with
// includeOutputs it adds the valid outputs of every derivation in it. An
// invalid path makes the server quit (the error carries its message).
func (c *Client) QueryClosure(ctx context.Context, paths []store.Path, includeOutputs bool) ([]store.Path, error) {
	var out []store.Path
	err := c.do(ctx, "QueryClosure", func() error {
		b := wire.AppendUint64(c.buf[:0], cmdQueryClosure)
		b = wire.AppendBool(b, includeOutputs)
		if err := c.send(appendPaths(b, paths)); err != nil {
			return err
		}
		var err error
		out, err = readPaths(c.r, "closure path")
		return err
	})
	return out, err
}
