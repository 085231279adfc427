package copy

import (
	"bufio"
	"os"
	"path/filepath"

	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/cachedir"
)

// digestCache keeps, per store path, the SHA-256 of each of its regular
// files of at least minRefSize bytes and the hash parts of its references
// (and its own) that each names, so that a predecessor indexed once, or
// assembled by an earlier delta copy, is indexed again without reading
// the files whose hash parts do not change. Store paths never change, so
// entries never expire. An entry never decides validity: a wrong one makes
// a NAR whose hash the daemon refuses, Receive then drops the entries it
// used, and the copy goes the plain way.
//
// A path deleted and built again with other contents gets the same name:
// entries are for a NAR hash, and one for another is not used. Both ends
// of a delta copy keep one (the sender for the paths it sends).
//
// One file per store path, named by its base name, in a directory only
// its owner can read: "nbuild-digests 1", the base name, the NAR hash,
// then per file its path in the NAR, size, digest and hash parts, in
// nar/wire encoding.
type digestCache struct {
	dir string
}

type cachedFile struct {
	rel    string
	size   int64
	digest digest
	found  []string
}

const digestCacheMagic = "nbuild-digests 1"

// openDigestCache opens the cache in dir: "" is nbuild/digests in the
// user's cache directory, "none" (or no cache directory) is no cache, a
// nil *digestCache, which every method takes.
func openDigestCache(dir string) *digestCache {
	if dir == "none" {
		return nil
	}
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil
		}
		dir = filepath.Join(base, "nbuild", "digests")
	}
	return &digestCache{dir: dir}
}

func (c *digestCache) file(p store.Path) string { return filepath.Join(c.dir, p.Base()) }

// load returns the entries of info's path by NAR path; nil when there are
// none for its NAR hash or they cannot be read.
func (c *digestCache) load(info *store.PathInfo) map[string]cachedFile {
	if c == nil {
		return nil
	}
	f, err := os.Open(c.file(info.Path))
	if err != nil {
		return nil
	}
	defer f.Close()
	r := wire.NewReader(bufio.NewReader(f))
	r.MaxString = 1 << 16
	d := &wire.Decoder{R: r}
	if d.Str() != digestCacheMagic || d.Str() != info.Path.Base() || d.Str() != string(info.NarHash[:]) {
		return nil
	}
	n := d.Count("files", 1<<24)
	out := make(map[string]cachedFile, n)
	for range n {
		e := cachedFile{rel: d.Str(), size: int64(d.U64())}
		b := d.Str()
		e.found = d.Strs()
		if d.Err != nil || len(b) != len(e.digest) || e.found == nil {
			return nil
		}
		copy(e.digest[:], b)
		out[e.rel] = e
	}
	return out
}

// store saves the raw digests of pi's files among files.
func (c *digestCache) store(files []*predFile, pi *predIndex) {
	var out []cachedFile
	for _, f := range files {
		if f.pred == pi {
			out = append(out, cachedFile{rel: f.rel, size: f.size, digest: f.raw, found: f.found})
		}
	}
	c.put(pi.info, out)
}

// put saves the entries of info's path, replacing any, atomically;
// failures only cost a later read.
func (c *digestCache) put(info *store.PathInfo, files []cachedFile) {
	if c == nil {
		return
	}
	b := wire.AppendString(nil, digestCacheMagic)
	b = wire.AppendString(b, info.Path.Base())
	b = wire.AppendBytes(b, info.NarHash[:])
	b = wire.AppendUint64(b, uint64(len(files)))
	for _, f := range files {
		b = wire.AppendString(b, f.rel)
		b = wire.AppendUint64(b, uint64(f.size))
		b = wire.AppendBytes(b, f.digest[:])
		b = wire.AppendStrings(b, f.found)
	}
	cachedir.WriteFile(c.dir, 0o700, info.Path.Base(), b)
}

// drop forgets p's entries.
func (c *digestCache) drop(p store.Path) {
	if c != nil {
		os.Remove(c.file(p))
	}
}
