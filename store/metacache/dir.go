package metacache

import (
	"path/filepath"
	"time"
)

// ResolveDir turns a cache directory setting, as nbuild's --cache-dir
// takes it, into the directory: "" is DefaultDir, "none" (or no home
// directory to put the default in) is "", for no cache; anything else is
// that directory, cleaned.
func ResolveDir(dir string) string {
	switch dir {
	case "none":
		return ""
	case "":
		d, err := DefaultDir()
		if err != nil {
			return ""
		}
		return d
	}
	return filepath.Clean(dir)
}

// OpenForLookups opens the cache in dir read-only, for lookups: a shared
// lock and no memtable, about a millisecond where a writable Open costs
// ten. It returns nil, and no error, when dir is "" or the cache cannot
// be read (none yet, locked by a writer, degraded): without a cache only
// estimates suffer.
func OpenForLookups(dir string) *Cache {
	if dir == "" {
		return nil
	}
	c, err := Open(dir, Options{ReadOnly: true})
	if err != nil || c.Degraded() != nil {
		c.Close()
		return nil
	}
	return c
}

// BuildTimes returns a lookup of the average build times recorded in c,
// read in one scan rather than a lookup per derivation: key turns the
// name asked about into the name RecordBuild was given (nbuild records
// sched.PackageName). A nil c gives a nil lookup.
func (c *Cache) BuildTimes(key func(string) string) func(name string) (time.Duration, bool) {
	if c == nil {
		return nil
	}
	all := c.AllBuildStats()
	return func(name string) (time.Duration, bool) {
		if len(all) == 0 {
			return 0, false
		}
		s, ok := all[key(name)]
		return s.Average, ok
	}
}
