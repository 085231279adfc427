package nar

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// RestoreOptions configure Restore; the zero value means default bounds
// and a source that must end with the NAR.
type RestoreOptions struct {
	ReaderOptions
	// AllowTrailing leaves whatever follows the NAR in the source unread
	// instead of failing with ErrTrailingData (for protocol streams).
	AllowTrailing bool
}

// Restore unpacks the NAR read from r as dir, which must not exist
// (like `nix-store --restore dir`). The tree is built in a temporary
// directory beside dir and renamed into place only after the whole NAR has
// been read and verified; on any error nothing is left behind. Every file
// is created through an os.Root of its directory, so nothing is ever
// written outside dir; symlinks are created, never followed.
//
// Permissions as Nix 2.8 restores them: directories 0777, files 0666 and
// executables 0777, less the umask.
func Restore(r io.Reader, dir string, opts RestoreOptions) (err error) {
	dir = filepath.Clean(dir)
	if _, err := os.Lstat(dir); err == nil {
		return &fs.PathError{Op: "restore", Path: dir, Err: fs.ErrExist}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".nar-*")
	if err != nil {
		return err
	}
	defer func() {
		if rmErr := os.RemoveAll(tmp); rmErr != nil && err == nil {
			err = rmErr
		}
	}()
	stage, err := os.OpenRoot(tmp)
	if err != nil {
		return err
	}
	rs := restorer{nr: NewReaderOptions(r, opts.ReaderOptions), stage: stage}
	err = rs.run()
	rs.closeAll()
	stage.Close()
	if err != nil {
		return err
	}
	if !opts.AllowTrailing {
		if err := checkEnd(r, rs.nr.Offset()); err != nil {
			return err
		}
	}
	return os.Rename(filepath.Join(tmp, "root"), dir)
}

// checkEnd fails unless r is at its end.
func checkEnd(r io.Reader, off int64) error {
	var b [1]byte
	for {
		n, err := r.Read(b[:])
		if n > 0 {
			return &Error{Offset: off, Err: ErrTrailingData}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// openDir is a directory being restored, opened as an os.Root.
type openDir struct {
	path string
	root *os.Root
}

type restorer struct {
	nr    *Reader
	stage *os.Root
	dirs  []openDir
	buf   []byte
}

func (rs *restorer) closeAll() {
	for _, d := range rs.dirs {
		d.root.Close()
	}
	rs.dirs = nil
}

func (rs *restorer) run() error {
	for {
		h, err := rs.nr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := rs.entry(h); err != nil {
			return err
		}
	}
}

func (rs *restorer) entry(h *Header) error {
	// Find the directory holding h; the Reader guarantees it is open.
	parent, name := rs.stage, "root"
	if h.Path != "" {
		dirPath, base := "", h.Path
		if i := strings.LastIndexByte(h.Path, '/'); i >= 0 {
			dirPath, base = h.Path[:i], h.Path[i+1:]
		}
		for len(rs.dirs) > 0 && rs.dirs[len(rs.dirs)-1].path != dirPath {
			rs.dirs[len(rs.dirs)-1].root.Close()
			rs.dirs = rs.dirs[:len(rs.dirs)-1]
		}
		if len(rs.dirs) == 0 {
			return &Error{Path: h.Path, Offset: rs.nr.Offset(), Err: ErrWriteOrder}
		}
		parent, name = rs.dirs[len(rs.dirs)-1].root, base
	}
	switch h.Type {
	case TypeDirectory:
		if err := parent.Mkdir(name, 0o777); err != nil {
			return err
		}
		sub, err := parent.OpenRoot(name)
		if err != nil {
			return err
		}
		rs.dirs = append(rs.dirs, openDir{path: h.Path, root: sub})
	case TypeSymlink:
		return parent.Symlink(h.LinkTarget, name)
	case TypeRegular:
		perm := os.FileMode(0o666)
		if h.Executable {
			perm = 0o777
		}
		f, err := parent.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if err != nil {
			return err
		}
		if rs.buf == nil {
			rs.buf = make([]byte, 256<<10)
		}
		if _, err := io.CopyBuffer(onlyWriter{f}, rs.nr, rs.buf); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("nar: restore: %w %v", ErrUnsupported, h.Type)
	}
	return nil
}

// onlyWriter hides *os.File's ReadFrom, which would copy in small chunks.
type onlyWriter struct{ io.Writer }
