package metacache

import (
	"context"
	"errors"

	"github.com/nbuild/nbuild/store"
)

// Querier is what Wrap returns: a store's path-info and validity queries,
// answered from the cache where it can.
type Querier interface {
	store.PathInfoQuerier
	store.ValidPathQuerier
}

// cachedStore answers positive validity and path-info queries from a
// Cache and asks the inner store for the rest. Negative answers and errors
// are never cached: a missing path may be added or substituted at any time.
type cachedStore struct {
	inner store.PathInfoQuerier
	valid store.ValidPathQuerier // inner's, or nil when it has none
	cache *Cache
	uri   string
}

var (
	_ store.PathInfoQuerier  = (*cachedStore)(nil)
	_ store.ValidPathQuerier = (*cachedStore)(nil)
)

// Wrap decorates inner with c. storeURI names the store in the cache (the
// same path may be valid in one store and not another); use the URI the
// user gave (e.g. "daemon", "ssh-ng://builder"). When inner is not a
// store.ValidPathQuerier, validity is asked path by path via QueryPathInfo.
// A nil or degraded c makes Wrap a transparent pass-through.
func Wrap(inner store.PathInfoQuerier, c *Cache, storeURI string) Querier {
	cs := &cachedStore{inner: inner, cache: c, uri: storeURI}
	cs.valid, _ = inner.(store.ValidPathQuerier)
	return cs
}

// QueryPathInfo returns the cached info of p, or asks the inner store and
// caches a successful answer.
func (s *cachedStore) QueryPathInfo(ctx context.Context, p store.Path) (*store.PathInfo, error) {
	if info, ok := s.cache.PathInfo(s.uri, p); ok {
		return info, nil
	}
	info, err := s.inner.QueryPathInfo(ctx, p)
	if err != nil {
		return nil, err
	}
	if info != nil && info.Path == p {
		_ = s.cache.PutPathInfo(s.uri, info) // a failed cache write only costs a later round trip
	}
	return info, nil
}

// QueryValidPaths returns the valid paths among paths in their input order
// (without duplicates): the cached ones without a round trip, the rest
// from the inner store in one call.
func (s *cachedStore) QueryValidPaths(ctx context.Context, paths []store.Path, substitute bool) ([]store.Path, error) {
	valid := make(map[store.Path]bool, len(paths))
	for _, p := range s.cache.ValidPaths(s.uri, paths) {
		valid[p] = true
	}
	var rest []store.Path
	for _, p := range paths {
		if !valid[p] {
			rest = append(rest, p)
		}
	}
	if len(rest) > 0 {
		got, err := s.queryInner(ctx, rest, substitute)
		if err != nil {
			return nil, err
		}
		asked := make(map[store.Path]bool, len(rest))
		for _, p := range rest {
			asked[p] = true
		}
		fresh := got[:0:0]
		for _, p := range got {
			if asked[p] && !valid[p] { // a peer's extra or repeated answer is not cached
				valid[p] = true
				fresh = append(fresh, p)
			}
		}
		_ = s.cache.PutValid(s.uri, fresh)
	}
	out := make([]store.Path, 0, len(valid))
	for _, p := range paths {
		if valid[p] {
			out = append(out, p)
			delete(valid, p)
		}
	}
	return out, nil
}

func (s *cachedStore) queryInner(ctx context.Context, paths []store.Path, substitute bool) ([]store.Path, error) {
	if s.valid != nil {
		return s.valid.QueryValidPaths(ctx, paths, substitute)
	}
	var got []store.Path
	for _, p := range paths {
		info, err := s.inner.QueryPathInfo(ctx, p)
		if errors.Is(err, store.ErrNotValid) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if info != nil && info.Path == p {
			_ = s.cache.PutPathInfo(s.uri, info)
		}
		got = append(got, p)
	}
	return got, nil
}
