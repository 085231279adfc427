//go:build !linux

package plan

import "os"

// dirIdentity is what changes when a directory's entries change: its
// mtime (ns) and size.
func dirIdentity(fi os.FileInfo) []byte {
	return appendInt64s(nil, fi.ModTime().UnixNano(), fi.Size())
}
