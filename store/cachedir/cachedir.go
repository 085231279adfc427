// Package cachedir keeps files in nbuild's cache directories (graph
// snapshots, cached schedules, file digests): a file is written whole or
// not at all, and a directory is bounded by removing its oldest files.
// A cache file is only ever a shortcut, so callers may ignore the errors.
package cachedir

import (
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// WriteFile writes data to dir/name atomically: a reader sees the old
// file or the whole new one, never a part. dir is made with perm if it is
// missing.
func WriteFile(dir string, perm os.FileMode, name string, data []byte) error {
	if err := os.MkdirAll(dir, perm); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// Prune removes the files of dir whose names end in suffix, oldest
// (by modification time) first, until keep are left. Hidden files (a
// WriteFile in progress) are left alone.
func Prune(dir, suffix string, keep int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type file struct {
		name string
		mod  int64
	}
	var files []file
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), suffix) || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if info, err := e.Info(); err == nil {
			files = append(files, file{e.Name(), info.ModTime().UnixNano()})
		}
	}
	if len(files) <= keep {
		return
	}
	slices.SortFunc(files, func(a, b file) int { return cmp.Compare(b.mod, a.mod) })
	for _, f := range files[keep:] {
		os.Remove(filepath.Join(dir, f.name))
	}
}
