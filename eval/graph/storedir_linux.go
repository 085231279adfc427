package graph

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

// storeDir reads .drv files with openat(2) relative to the store
// directory and plain read(2) into a reused buffer: no path walk from /,
// no fstat, no netpoller registration, no *os.File. For a closure of
// thousands of small files this halves the time in the kernel.
type storeDir struct {
	root string // as given to Load ("" for /nix/store)
	dir  *os.File
	fd   int
}

// nameBuf holds a NUL-terminated base name; a store path's base name is
// at most 32+1+211 bytes. Each worker has its own.
type nameBuf [256]byte

func openStoreDir(root string) (*storeDir, error) {
	f, err := os.Open(filepath.Join(root, "/nix/store"))
	if err != nil {
		return nil, err
	}
	return &storeDir{root: root, dir: f, fd: int(f.Fd())}, nil
}

func (d *storeDir) Close() error { return d.dir.Close() }

// read returns the contents of the file base, in buf's memory when it
// fits. The returned slice is valid until the next read with it.
//
// Unless full, a read that returns less than it was asked for ends the
// file: local file systems return short reads of regular files only at
// the end, and this saves the read(2) that returns 0, a quarter of the
// system calls of a closure's load. A file cut short by a file system
// that reads in pieces would fail to parse (ATerm is self-delimiting);
// the loader then reads it again with full.
func (d *storeDir) read(base string, buf []byte, name *nameBuf, full bool) ([]byte, error) {
	// openat(2) without syscall.Openat's allocation of a C string.
	if len(base) >= len(name) {
		return buf[:0], d.pathError("open", base, syscall.ENAMETOOLONG)
	}
	copy(name[:], base)
	name[len(base)] = 0
	var fd int
	for {
		r, _, errno := syscall.Syscall6(syscall.SYS_OPENAT, uintptr(d.fd), uintptr(unsafe.Pointer(&name[0])),
			syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0, 0, 0)
		if errno == 0 {
			fd = int(r)
			break
		}
		if errno != syscall.EINTR {
			return buf[:0], d.pathError("open", base, errno)
		}
	}
	defer syscall.Close(fd)
	if cap(buf) < 16<<10 {
		buf = make([]byte, 0, 64<<10)
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return buf[:0], d.pathError("read", base, err)
		}
		if n == 0 {
			return buf, nil
		}
		short := n < cap(buf)-len(buf)
		buf = buf[:len(buf)+n]
		if short && !full {
			return buf, nil
		}
	}
}

func (d *storeDir) pathError(op, base string, err error) error {
	return &fs.PathError{Op: op, Path: filepath.Join(d.root, "/nix/store", base), Err: err}
}
