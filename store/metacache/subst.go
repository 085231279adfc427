package metacache

import (
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nbuild/nbuild/store"
)

// How long answers about substitutes are trusted, as Nix's narinfo cache
// trusts them (narinfo-cache-positive-ttl, narinfo-cache-negative-ttl in
// 2.8's globals.hh), and how long substituters that did not answer are
// left alone (2.8's binary cache stores disable themselves for 60 s after
// a failure).
const (
	SubstitutablePositiveTTL = 30 * 24 * time.Hour
	SubstitutableNegativeTTL = time.Hour
	UnreachableTTL           = time.Minute
)

const (
	substNo  = 0
	substYes = 1
)

func substKey(substituters string, p store.Path) []byte {
	return storeKey(prefixSubst, substituters, p)
}

func unreachableKey(substituters string) []byte {
	return append([]byte{prefixUnreachable}, substituters...)
}

// Substitutable returns the remembered answers about paths for the
// substituters named by key (their URIs joined by spaces): whether each
// path it knows about can be substituted. Paths it does not know about
// are absent.
func (c *Cache) Substitutable(key string, paths []store.Path) map[store.Path]bool {
	out := map[store.Path]bool{}
	if c == nil || c.db == nil || len(paths) == 0 {
		return out
	}
	var k []byte
	_ = c.db.View(func(txn *badger.Txn) error {
		for _, p := range paths {
			k = append(append(append(append(k[:0], prefixSubst), key...), 0), p.Base()...)
			item, err := txn.Get(k)
			if err != nil {
				continue
			}
			_ = item.Value(func(v []byte) error {
				if len(v) == 2 && v[0] == recordVersion {
					out[p] = v[1] == substYes
				}
				return nil
			})
		}
		return nil
	})
	return out
}

// PutSubstitutable remembers which of asked the substituters named by
// key can provide (yes) and which they cannot (the rest), positive and
// negative answers each with Nix's time to live.
func (c *Cache) PutSubstitutable(key string, asked, yes []store.Path) error {
	if !c.writable() || len(asked) == 0 {
		return nil
	}
	isYes := make(map[store.Path]bool, len(yes))
	for _, p := range yes {
		isYes[p] = true
	}
	wb := c.db.NewWriteBatch()
	defer wb.Cancel()
	for _, p := range asked {
		v, ttl := []byte{recordVersion, substNo}, SubstitutableNegativeTTL
		if isYes[p] {
			v, ttl = []byte{recordVersion, substYes}, SubstitutablePositiveTTL
		}
		if err := wb.SetEntry(badger.NewEntry(substKey(key, p), v).WithTTL(ttl)); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// Unreachable reports whether the substituters named by key recently
// failed to answer (PutUnreachable), and when that was.
func (c *Cache) Unreachable(key string) (time.Time, bool) {
	v, ok := c.get(unreachableKey(key))
	if !ok || len(v) != 1+8 || v[0] != recordVersion {
		return time.Time{}, false
	}
	var ns int64
	for _, b := range v[1:] {
		ns = ns<<8 | int64(b)
	}
	return time.Unix(0, ns), true
}

// PutUnreachable remembers for UnreachableTTL that the substituters named
// by key did not answer at t, so that the next plans do not wait on them.
func (c *Cache) PutUnreachable(key string, t time.Time) error {
	v := []byte{recordVersion, 0, 0, 0, 0, 0, 0, 0, 0}
	ns := t.UnixNano()
	for i := 8; i >= 1; i-- {
		v[i] = byte(ns)
		ns >>= 8
	}
	return c.set(unreachableKey(key), v, UnreachableTTL)
}
