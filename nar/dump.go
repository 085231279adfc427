package nar

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"slices"
	"syscall"
)

// dumpBufSize is the Writer buffer DumpPath uses: file contents are read
// straight into it, so big files cost one read and one write per 256 KiB.
const dumpBufSize = 256 << 10

// DumpPath writes the NAR of the file system object at path to w, byte for
// byte what `nix-store --dump path` writes (2.8 archive.cc dump): entries
// sorted by name, "executable" iff the owner-execute bit is set, symlinks
// verbatim and never followed. Sockets, devices and FIFOs are an error
// (ErrUnsupported). It does not close w.
func DumpPath(w io.Writer, path string) error {
	nw := &Writer{w: w, buf: make([]byte, 0, dumpBufSize)}
	d := dumper{w: nw}
	if err := d.dump(path, ""); err != nil {
		return err
	}
	return nw.Close()
}

type dumper struct {
	w *Writer
	h Header
}

func (d *dumper) dump(osPath, narPath string) error {
	fi, err := os.Lstat(osPath)
	if err != nil {
		return err
	}
	d.h = Header{Path: narPath}
	switch mode := fi.Mode(); {
	case mode.IsRegular():
		f, err := os.OpenFile(osPath, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		d.h.Type = TypeRegular
		d.h.Size = fi.Size()
		d.h.Executable = mode&0o100 != 0
		if err := d.w.WriteHeader(&d.h); err != nil {
			return err
		}
		if _, err := d.w.ReadFrom(f); err != nil {
			return fmt.Errorf("dumping %s: %w", osPath, err)
		}
		return nil
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(osPath)
		if err != nil {
			return err
		}
		d.h.Type = TypeSymlink
		d.h.LinkTarget = target
		return d.w.WriteHeader(&d.h)
	case mode.IsDir():
		d.h.Type = TypeDirectory
		if err := d.w.WriteHeader(&d.h); err != nil {
			return err
		}
		names, err := DirNames(osPath)
		if err != nil {
			return err
		}
		for _, name := range names {
			child := name
			if narPath != "" {
				child = narPath + "/" + name
			}
			if err := d.dump(osPath+"/"+name, child); err != nil {
				return err
			}
		}
		return nil
	default:
		return &fs.PathError{Op: "dump", Path: osPath, Err: fmt.Errorf("%w %v", ErrUnsupported, mode.Type())}
	}
}

// DirNames returns the names of the entries of the directory dir in the
// order a NAR lists them: byte-wise, as std::map<std::string> in Nix.
func DirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// HashingWriter counts and SHA-256-hashes what is written through it,
// passing it on to an optional underlying writer.
type HashingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

// NewHashingWriter returns a HashingWriter passing bytes on to w; w may be
// nil to only hash.
func NewHashingWriter(w io.Writer) *HashingWriter {
	return &HashingWriter{w: w, h: sha256.New()}
}

func (hw *HashingWriter) Write(p []byte) (int, error) {
	if hw.w != nil {
		n, err := hw.w.Write(p)
		hw.h.Write(p[:n])
		hw.n += int64(n)
		return n, err
	}
	hw.h.Write(p)
	hw.n += int64(len(p))
	return len(p), nil
}

// Sum returns the SHA-256 of the bytes written so far.
func (hw *HashingWriter) Sum() [32]byte {
	var s [32]byte
	hw.h.Sum(s[:0])
	return s
}

// Size returns the number of bytes written so far.
func (hw *HashingWriter) Size() int64 { return hw.n }

// HashPath returns the SHA-256 and size of path's NAR (its narHash and
// narSize), streaming the NAR through the hash without storing it.
func HashPath(path string) ([32]byte, int64, error) {
	hw := NewHashingWriter(nil)
	if err := DumpPath(hw, path); err != nil {
		return [32]byte{}, 0, err
	}
	return hw.Sum(), hw.Size(), nil
}
