// Package metacache is nbuild's on-disk metadata cache: a small badger
// database that remembers facts which are expensive to ask a store for and
// cheap to keep.
//
// Vocabulary:
//   - derivation: the raw ATerm bytes of a .drv file, keyed by its store
//     path. A .drv path names its content, so entries never go stale.
//   - path info: the store.PathInfo of a path some store reported VALID,
//     keyed by the store's URI and the path. Only positive answers are kept
//     (a missing path may appear any moment); they expire after a TTL
//     because a garbage collection can make a valid path invalid.
//   - build stats: per derivation name, how often it was built and an
//     exponentially weighted moving average of its build time, for the
//     scheduler's critical-path estimates.
//
// A cache never makes its caller fail. When the directory is locked by
// another process the cache runs uncached ("degraded") and says so once
// through Options.Warn and Degraded; when the directory is corrupt it is
// moved aside to <dir>.corrupt and rebuilt empty.
package metacache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// ErrLocked is wrapped by the warning a cache gives when another process
// (or another Open in this process) holds its directory.
var ErrLocked = errors.New("metacache: cache directory is in use by another process")

// ErrCorrupt is wrapped by the warning a cache gives when it found its
// directory unreadable and moved it aside.
var ErrCorrupt = errors.New("metacache: cache directory was corrupt")

// schemaVersion is stored under keySchema; a cache written by another
// schema is emptied on Open rather than misread.
const schemaVersion = 1

// Key prefixes. Each record kind has its own byte so that kinds never
// collide and a prefix scan finds one kind.
const (
	prefixDrv   = 'd' // d <drv base>                       → raw ATerm
	prefixInfo  = 'i' // i <store URI> 0 <base>             → encoded PathInfo
	prefixValid = 'v' // v <store URI> 0 <base>             → empty: valid, info unknown
	prefixBuild = 'b' // b <derivation name>                → encoded BuildStats
	prefixSubst = 's' // s <substituters> 0 <base>          → version, 1 substitutable / 0 not
	// u <substituters> → version, unix ns (big-endian) when they did not answer
	prefixUnreachable = 'u'
	keySchema         = "\x00schema"
	defaultTTL        = time.Hour
	defaultMemSize    = 8 << 20
)

// Options configures Open. The zero value is the default.
type Options struct {
	// LockWait is how long Open keeps retrying when another process holds
	// the directory before it gives up and runs uncached. Zero: no wait.
	LockWait time.Duration
	// Warn, when set, receives each reason the cache is degraded or was
	// rebuilt (wrapping ErrLocked or ErrCorrupt). It is called from Open.
	Warn func(error)
	// PathInfoTTL bounds how long a positive validity answer is trusted.
	// Zero: one hour. Negative: forever.
	PathInfoTTL time.Duration
	// MemTableSize is badger's memtable size. Zero: 8 MiB.
	MemTableSize int64
	// ReadOnly opens the cache for lookups only, for a command that only
	// reads (nbuild graph's recorded build times): the lock is shared, so
	// readers never wait for each other (but do not run beside a writer);
	// no memtable is made, so opening costs about a millisecond instead of
	// ten; every write is dropped. A missing, locked or corrupt directory
	// runs uncached (with a warning) instead of being created or rebuilt.
	ReadOnly bool
}

// Cache is an open metadata cache. Its methods are safe for concurrent use.
// A degraded Cache (see Degraded) answers every lookup with a miss and
// drops every write.
type Cache struct {
	db       *badger.DB
	lock     *os.File
	degraded error
	ttl      time.Duration
	readOnly bool
}

// DefaultDir is where nbuild keeps its metadata cache:
// $XDG_CACHE_HOME/nbuild/metacache, or ~/.cache/nbuild/metacache.
func DefaultDir() (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" || !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("metacache: no cache directory: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "nbuild", "metacache"), nil
}

// Open opens (creating if needed) the cache in dir. It fails only on an
// empty dir; every other problem yields a working, possibly degraded,
// Cache and a warning through opts.Warn.
//
// The lock is the file <dir>.lock, held with flock for the life of the
// Cache, so that moving a corrupt dir aside never races another process.
func Open(dir string, opts Options) (*Cache, error) {
	if dir == "" {
		return nil, errors.New("metacache: empty cache directory")
	}
	dir = filepath.Clean(dir)
	c := &Cache{ttl: opts.PathInfoTTL, readOnly: opts.ReadOnly}
	if c.ttl == 0 {
		c.ttl = defaultTTL
	}
	warn := func(err error) {
		if opts.Warn != nil {
			opts.Warn(err)
		}
	}
	degrade := func(err error) (*Cache, error) {
		c.degraded = err
		if c.lock != nil {
			c.lock.Close()
			c.lock = nil
		}
		warn(err)
		return c, nil
	}

	if opts.ReadOnly {
		if _, err := os.Stat(dir); err != nil {
			return degrade(fmt.Errorf("metacache: running uncached: %w", err))
		}
	} else if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return degrade(fmt.Errorf("metacache: running uncached: %w", err))
	}
	lock, err := lockFile(dir+".lock", opts.LockWait, opts.ReadOnly)
	if err != nil {
		return degrade(err)
	}
	c.lock = lock

	db, err := openDB(dir, opts)
	if err != nil && opts.ReadOnly {
		return degrade(fmt.Errorf("metacache: running uncached: %w", err))
	}
	if err != nil {
		aside := dir + ".corrupt"
		warn(fmt.Errorf("%w: %s moved to %s and rebuilt: %v", ErrCorrupt, dir, aside, err))
		if rmErr := os.RemoveAll(aside); rmErr != nil {
			return degrade(fmt.Errorf("metacache: running uncached: %w", rmErr))
		}
		if mvErr := os.Rename(dir, aside); mvErr != nil && !errors.Is(mvErr, os.ErrNotExist) {
			return degrade(fmt.Errorf("metacache: running uncached: %w", mvErr))
		}
		db, err = openDB(dir, opts)
		if err != nil {
			return degrade(fmt.Errorf("metacache: running uncached: %w", err))
		}
	}
	c.db = db
	return c, nil
}

// lockFile takes an exclusive (or, for a reader, shared) flock on path,
// retrying until wait has passed. flock locks belong to the open file, so a
// second Open in the same process contends like a second process does.
func lockFile(path string, wait time.Duration, shared bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("metacache: running uncached: %w", err)
	}
	how := syscall.LOCK_EX
	if shared {
		how = syscall.LOCK_SH
	}
	deadline := time.Now().Add(wait)
	for {
		err = syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || !time.Now().Before(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w (%s); running uncached: %v", ErrLocked, path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// openDB opens badger with a small footprint and checks the schema. Badger
// panics on some corrupt files; that is turned into an error here so the
// caller can rebuild.
func openDB(dir string, opts Options) (db *badger.DB, err error) {
	mem := opts.MemTableSize
	if mem <= 0 {
		mem = defaultMemSize
	}
	bo := badger.DefaultOptions(dir).
		WithLogger(nil).
		WithMetricsEnabled(false).
		WithMemTableSize(mem).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(2 << 20).
		WithBaseLevelSize(8 << 20).
		WithValueLogFileSize(16 << 20).
		WithValueThreshold(64 << 10).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(0).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithCompression(options.None). // checkTables reads blocks as stored
		WithReadOnly(opts.ReadOnly)
	if opts.ReadOnly {
		bo = bo.WithNumCompactors(0)
	}
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("badger panicked: %v", r)
		}
	}()
	if err := checkTables(dir); err != nil {
		return nil, err
	}
	db, err = badger.Open(bo)
	if err != nil {
		return nil, err
	}
	if opts.ReadOnly {
		if err := readSchema(db); err != nil {
			db.Close()
			return nil, err
		}
		return db, nil
	}
	if err := checkSchema(db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// readSchema fails unless the cache was written under this schema (a
// reader cannot empty it as checkSchema does).
func readSchema(db *badger.DB) error {
	return db.View(func(txn *badger.Txn) error {
		it, err := txn.Get([]byte(keySchema))
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			if string(v) != string(binary.AppendUvarint(nil, schemaVersion)) {
				return errors.New("metacache: written by another schema version")
			}
			return nil
		})
	})
}

// checkSchema empties a cache written under another schema version and
// stamps the current one. Reading the key also touches the LSM tree once,
// so a corrupt table surfaces here rather than at the first lookup.
func checkSchema(db *badger.DB) error {
	var have []byte
	err := db.View(func(txn *badger.Txn) error {
		it, err := txn.Get([]byte(keySchema))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		have, err = it.ValueCopy(nil)
		return err
	})
	if err != nil {
		return err
	}
	want := binary.AppendUvarint(nil, schemaVersion)
	if string(have) == string(want) {
		return nil
	}
	if have != nil {
		if err := db.DropAll(); err != nil {
			return err
		}
	}
	return db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(keySchema), want)
	})
}

// Degraded reports why the cache runs uncached, or nil when it caches.
func (c *Cache) Degraded() error {
	if c == nil {
		return errors.New("metacache: no cache")
	}
	return c.degraded
}

// Close flushes and closes the database and releases the directory lock.
// Closing a nil or degraded Cache is a no-op.
func (c *Cache) Close() error {
	if c == nil {
		return nil
	}
	var err error
	if c.db != nil {
		err = c.db.Close()
		c.db = nil
	}
	if c.lock != nil {
		c.lock.Close() // releases the flock
		c.lock = nil
	}
	return err
}

// get returns a copy of the value under key, or ok=false on a miss, a
// degraded cache or a read error (a cache read never fails its caller).
func (c *Cache) get(key []byte) (val []byte, ok bool) {
	if c == nil || c.db == nil {
		return nil, false
	}
	err := c.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(key)
		if err != nil {
			return err
		}
		val, err = it.ValueCopy(nil)
		return err
	})
	return val, err == nil
}

// writable reports whether writes reach the database.
func (c *Cache) writable() bool { return c != nil && c.db != nil && !c.readOnly }

func (c *Cache) set(key, val []byte, ttl time.Duration) error {
	if !c.writable() {
		return nil
	}
	return c.db.Update(func(txn *badger.Txn) error {
		e := badger.NewEntry(key, val)
		if ttl > 0 {
			e = e.WithTTL(ttl)
		}
		return txn.SetEntry(e)
	})
}
