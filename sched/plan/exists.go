package plan

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/nbuild/nbuild/store"
)

// existingCached is existing with its answer kept in cacheDir ("" for
// none): a warm plan of 3,500 derivations spent 2-3 ms listing a store of
// 4,500 entries, and a big store is answered by thousands of lstats. The
// answer for a directory and a list of paths is valid while the directory
// is the same one (device, inode) with the same mtime, ctime and size:
// adding or removing an entry changes its mtime. As git does for racy
// index entries, a directory changed within the last second is neither
// answered from the cache nor cached, since a change in the same clock
// tick as the listing would not show in its timestamps.
func existingCached(cacheDir, dir string, paths []store.Path) ([]store.Path, error) {
	if cacheDir == "" {
		return existing(dir, paths)
	}
	fi, err := os.Stat(dir)
	if err != nil || time.Since(fi.ModTime()) < time.Second {
		return existing(dir, paths)
	}
	key := append([]byte(existsMagic), dirIdentity(fi)...)
	h := sha256.New()
	h.Write([]byte(dir))
	h.Write(pathsFingerprint(paths))
	file := filepath.Join(cacheDir, "exists-"+hex.EncodeToString(h.Sum(nil)[:16]))
	if data, err := os.ReadFile(file); err == nil && bytes.HasPrefix(data, key) && len(data) == len(key)+(len(paths)+7)/8 {
		bits := data[len(key):]
		var out []store.Path
		for i, p := range paths {
			if bits[i/8]&(1<<(i%8)) != 0 {
				out = append(out, p)
			}
		}
		return out, nil
	}
	out, err := existing(dir, paths)
	if err != nil {
		return out, err
	}
	bits := make([]byte, (len(paths)+7)/8)
	j := 0
	for i, p := range paths {
		if j < len(out) && out[j] == p {
			bits[i/8] |= 1 << (i % 8)
			j++
		}
	}
	saveExists(cacheDir, file, append(key, bits...))
	return out, nil
}

// existsMagic starts an existence cache file; the directory's identity and
// the bitmap of existing paths follow.
const existsMagic = "nbuild-exists 1\n"

// maxExistsFiles bounds the existence caches kept (one per store directory
// and closure), newest first.
const maxExistsFiles = 32

// saveExists writes data to file atomically and prunes old caches; it is
// only a cache, so failures are ignored.
func saveExists(dir, file string, data []byte) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	tmp, err := os.CreateTemp(dir, ".exists-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(data)
	if cerr := tmp.Close(); werr != nil || cerr != nil || os.Rename(tmp.Name(), file) != nil {
		os.Remove(tmp.Name())
		return
	}
	old, _ := filepath.Glob(filepath.Join(dir, "exists-*"))
	if len(old) <= maxExistsFiles {
		return
	}
	mtime := map[string]time.Time{}
	for _, f := range old {
		if fi, err := os.Stat(f); err == nil {
			mtime[f] = fi.ModTime()
		}
	}
	sort.Slice(old, func(i, j int) bool { return mtime[old[i]].After(mtime[old[j]]) })
	for _, f := range old[maxExistsFiles:] {
		os.Remove(f)
	}
}

// pathsFingerprint identifies a list of store paths for the cache file's
// name: two 64-bit multiply-xorshift lanes over every digest and name, and
// the count. A SHA-256 of the paths' base names was a fifth of a warm
// 100,000-derivation plan's instructions (the nix32 encoding of each digest
// and 6 MB hashed); this reads each path's 20 digest bytes and its name
// once, 8 bytes at a time.
func pathsFingerprint(paths []store.Path) []byte {
	a, b := uint64(0x243f6a8885a308d3), uint64(0x13198a2e03707344)
	mix := func(w uint64) {
		a = (a ^ w) * 0x9e3779b97f4a7c15
		a ^= a >> 31
		b = (b + w) * 0xc2b2ae3d27d4eb4f
		b ^= b >> 29
	}
	for _, p := range paths {
		d := p.Digest()
		mix(binary.LittleEndian.Uint64(d[0:]))
		mix(binary.LittleEndian.Uint64(d[8:]))
		mix(uint64(binary.LittleEndian.Uint32(d[16:])))
		name := p.Name()
		for len(name) >= 8 {
			mix(le64(name))
			name = name[8:]
		}
		var tail uint64
		for i := len(name) - 1; i >= 0; i-- {
			tail = tail<<8 | uint64(name[i])
		}
		mix(tail ^ uint64(len(name))<<56)
	}
	return appendInt64s(nil, int64(a), int64(b), int64(len(paths)))
}

// le64 reads the first 8 bytes of s, little endian (one load on amd64).
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// appendInt64s appends vs little endian.
func appendInt64s(b []byte, vs ...int64) []byte {
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	return b
}
