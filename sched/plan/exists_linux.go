package plan

import (
	"os"
	"syscall"
)

// dirIdentity is what changes when a directory is replaced or its entries
// change: device, inode, mtime, ctime (ns) and size.
func dirIdentity(fi os.FileInfo) []byte {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return appendInt64s(nil, fi.ModTime().UnixNano(), fi.Size())
	}
	return appendInt64s(nil, int64(st.Dev), int64(st.Ino), st.Mtim.Nano(), st.Ctim.Nano(), st.Size)
}
