package metacache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/nbuild/nbuild/store"
)

// errRecord is returned by the decoders for a record they cannot read;
// such a record counts as a miss.
var errRecord = errors.New("metacache: malformed record")

// recordVersion leads every encoded value, so that a later encoding can be
// told apart without a schema bump.
const recordVersion = 1

func drvKey(p store.Path) []byte {
	return append([]byte{prefixDrv}, p.Base()...)
}

func storeKey(prefix byte, storeURI string, p store.Path) []byte {
	k := make([]byte, 0, 2+len(storeURI)+store.HashPartLen+1+len(p.Name()))
	k = append(k, prefix)
	k = append(k, storeURI...)
	k = append(k, 0)
	return append(k, p.Base()...)
}

// Derivation returns the cached ATerm bytes of the .drv at p.
func (c *Cache) Derivation(p store.Path) ([]byte, bool) {
	v, ok := c.get(drvKey(p))
	if !ok || len(v) == 0 || v[0] != recordVersion {
		return nil, false
	}
	return v[1:], true
}

// PutDerivation remembers the ATerm bytes of the .drv at p. They never
// expire: a .drv path names its content.
func (c *Cache) PutDerivation(p store.Path, aterm []byte) error {
	v := make([]byte, 0, 1+len(aterm))
	v = append(v, recordVersion)
	v = append(v, aterm...)
	return c.set(drvKey(p), v, 0)
}

// PathInfo returns the cached info of p as the store storeURI reported it.
func (c *Cache) PathInfo(storeURI string, p store.Path) (*store.PathInfo, bool) {
	v, ok := c.get(storeKey(prefixInfo, storeURI, p))
	if !ok {
		return nil, false
	}
	info, err := decodePathInfo(v)
	if err != nil || info.Path != p {
		return nil, false
	}
	return info, true
}

// PutPathInfo remembers that storeURI holds info.Path as valid, with info.
func (c *Cache) PutPathInfo(storeURI string, info *store.PathInfo) error {
	if info == nil || info.Path.IsZero() {
		return errors.New("metacache: PutPathInfo without a path")
	}
	return c.set(storeKey(prefixInfo, storeURI, info.Path), appendPathInfo(nil, info), c.ttl)
}

// ValidPaths returns those of paths that storeURI is cached as holding
// valid (from PutValid or PutPathInfo), in one read transaction.
func (c *Cache) ValidPaths(storeURI string, paths []store.Path) []store.Path {
	if c == nil || c.db == nil || len(paths) == 0 {
		return nil
	}
	var valid []store.Path
	var key []byte
	_ = c.db.View(func(txn *badger.Txn) error {
		for _, p := range paths {
			key = append(key[:0], prefixValid)
			key = append(key, storeURI...)
			key = append(key, 0)
			key = append(key, p.Base()...)
			if _, err := txn.Get(key); err == nil {
				valid = append(valid, p)
				continue
			}
			key[0] = prefixInfo
			if _, err := txn.Get(key); err == nil {
				valid = append(valid, p)
			}
		}
		return nil
	})
	return valid
}

// PutValid remembers that storeURI holds every path in paths as valid.
func (c *Cache) PutValid(storeURI string, paths []store.Path) error {
	if !c.writable() || len(paths) == 0 {
		return nil
	}
	wb := c.db.NewWriteBatch()
	defer wb.Cancel()
	for _, p := range paths {
		e := badger.NewEntry(storeKey(prefixValid, storeURI, p), nil)
		if c.ttl > 0 {
			e = e.WithTTL(c.ttl)
		}
		if err := wb.SetEntry(e); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// appendPathInfo encodes info compactly:
//
//	version u8 | path | flags u8 (1: deriver, 2: ultimate) | [deriver]
//	| narHash [32] | narSize uvarint | regTime varint
//	| nrefs uvarint | refs... | nsigs uvarint | sigs (uvarint len + bytes)...
//	| ca (uvarint len + bytes)
//
// where a path is digest [20] + uvarint name length + name, and each
// reference is a tag byte, 0 for the path itself (self-references are
// common and cost one byte) or 1 followed by the path.
func appendPathInfo(dst []byte, info *store.PathInfo) []byte {
	dst = append(dst, recordVersion)
	dst = appendPath(dst, info.Path)
	var flags byte
	if !info.Deriver.IsZero() {
		flags |= 1
	}
	if info.Ultimate {
		flags |= 2
	}
	dst = append(dst, flags)
	if flags&1 != 0 {
		dst = appendPath(dst, info.Deriver)
	}
	dst = append(dst, info.NarHash[:]...)
	dst = binary.AppendUvarint(dst, info.NarSize)
	dst = binary.AppendVarint(dst, info.RegistrationTime)
	dst = binary.AppendUvarint(dst, uint64(len(info.References)))
	for _, r := range info.References {
		if r == info.Path {
			dst = append(dst, 0)
			continue
		}
		dst = append(dst, 1)
		dst = appendPath(dst, r)
	}
	dst = binary.AppendUvarint(dst, uint64(len(info.Sigs)))
	for _, s := range info.Sigs {
		dst = appendString(dst, s)
	}
	return appendString(dst, info.CA)
}

func appendPath(dst []byte, p store.Path) []byte {
	d := p.Digest()
	dst = append(dst, d[:]...)
	return appendString(dst, p.Name())
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// recordReader decodes appendPathInfo's format with a sticky error.
type recordReader struct {
	b   []byte
	err error
}

func (r *recordReader) fail() {
	if r.err == nil {
		r.err = errRecord
	}
	r.b = nil
}

func (r *recordReader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *recordReader) bytes(n uint64) []byte {
	if uint64(len(r.b)) < n {
		r.fail()
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *recordReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) string() string {
	return string(r.bytes(r.uvarint()))
}

// count reads a list length, bounded by the bytes left (each element takes
// at least one byte), so a corrupt length cannot allocate much.
func (r *recordReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return 0
	}
	return int(n)
}

func (r *recordReader) path() store.Path {
	var d [store.DigestSize]byte
	copy(d[:], r.bytes(store.DigestSize))
	name := r.string()
	if r.err != nil {
		return store.Path{}
	}
	p, err := store.NewPath(d, name)
	if err != nil {
		r.fail()
	}
	return p
}

func decodePathInfo(b []byte) (*store.PathInfo, error) {
	r := &recordReader{b: b}
	if r.byte() != recordVersion {
		return nil, errRecord
	}
	info := &store.PathInfo{Path: r.path()}
	flags := r.byte()
	if flags&1 != 0 {
		info.Deriver = r.path()
	}
	info.Ultimate = flags&2 != 0
	copy(info.NarHash[:], r.bytes(uint64(len(info.NarHash))))
	info.NarSize = r.uvarint()
	info.RegistrationTime = r.varint()
	if n := r.count(); n > 0 {
		info.References = make([]store.Path, n)
		for i := range info.References {
			if r.byte() == 0 {
				info.References[i] = info.Path
			} else {
				info.References[i] = r.path()
			}
		}
	}
	if n := r.count(); n > 0 {
		info.Sigs = make([]string, n)
		for i := range info.Sigs {
			info.Sigs[i] = r.string()
		}
	}
	info.CA = r.string()
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	if r.err != nil {
		return nil, r.err
	}
	return info, nil
}

// BuildStats is what the cache knows about past builds of one derivation
// name (e.g. "hello-2.12.1").
type BuildStats struct {
	Count   uint64        // builds recorded
	Average time.Duration // exponentially weighted moving average
	Last    time.Duration // the most recent build
}

// ewmaWeight is the weight of the newest build in Average: recent builds
// dominate (machines and inputs change) without one outlier taking over.
const ewmaWeight = 0.3

func buildKey(name string) []byte {
	return append([]byte{prefixBuild}, name...)
}

// BuildStats returns the recorded build times of name.
func (c *Cache) BuildStats(name string) (BuildStats, bool) {
	v, ok := c.get(buildKey(name))
	if !ok {
		return BuildStats{}, false
	}
	s, err := decodeBuildStats(v)
	return s, err == nil
}

// AllBuildStats returns the recorded build times of every name, in one
// scan: cheaper than a BuildStats lookup per derivation when a caller
// wants many (a plan of thousands). Malformed records are left out.
func (c *Cache) AllBuildStats() map[string]BuildStats {
	out := map[string]BuildStats{}
	if c == nil || c.db == nil {
		return out
	}
	_ = c.db.View(func(txn *badger.Txn) error {
		prefix := []byte{prefixBuild}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			_ = item.Value(func(v []byte) error {
				if s, err := decodeBuildStats(v); err == nil {
					out[string(item.Key()[1:])] = s
				}
				return nil
			})
		}
		return nil
	})
	return out
}

// RecordBuild adds one build of name that took d.
func (c *Cache) RecordBuild(name string, d time.Duration) error {
	if !c.writable() {
		return nil
	}
	if name == "" || d < 0 {
		return fmt.Errorf("metacache: RecordBuild(%q, %v): need a name and a non-negative duration", name, d)
	}
	key := buildKey(name)
	for {
		err := c.db.Update(func(txn *badger.Txn) error {
			var s BuildStats
			if it, err := txn.Get(key); err == nil {
				if v, err := it.ValueCopy(nil); err == nil {
					s, _ = decodeBuildStats(v) // a malformed record starts over
				}
			}
			if s.Count == 0 {
				s.Average = d
			} else {
				s.Average = time.Duration(math.Round(ewmaWeight*float64(d) + (1-ewmaWeight)*float64(s.Average)))
			}
			s.Count++
			s.Last = d
			return txn.Set(key, appendBuildStats(nil, s))
		})
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
}

func appendBuildStats(dst []byte, s BuildStats) []byte {
	dst = append(dst, recordVersion)
	dst = binary.AppendUvarint(dst, s.Count)
	dst = binary.AppendUvarint(dst, uint64(s.Average))
	return binary.AppendUvarint(dst, uint64(s.Last))
}

func decodeBuildStats(b []byte) (BuildStats, error) {
	r := &recordReader{b: b}
	if r.byte() != recordVersion {
		return BuildStats{}, errRecord
	}
	s := BuildStats{Count: r.uvarint()}
	s.Average = time.Duration(r.uvarint())
	s.Last = time.Duration(r.uvarint())
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	if r.err != nil || s.Average < 0 || s.Last < 0 {
		return BuildStats{}, errRecord
	}
	return s, nil
}
