package nar

import (
	"io"
	"slices"
	"strconv"
	"strings"
)

// Listing is the table of contents of a NAR, as a binary cache's .ls file
// holds it (2.8 nar-accessor.cc listNar, written with
// write-nar-listing=true).
type Listing struct {
	Root *Node
}

// Node is one entry of a Listing.
type Node struct {
	Type       Type
	Size       int64 // regular files
	Executable bool  // regular files
	NarOffset  int64 // regular files: offset of the contents in the NAR
	LinkTarget string
	Entries    map[string]*Node // directories
}

// List reads a whole NAR from r and returns its listing. r must end with
// the NAR (ErrTrailingData otherwise).
func List(r io.Reader) (*Listing, error) {
	nr := NewReader(r)
	l := &Listing{}
	var dirs []*Node // open directories, innermost last, with their paths
	var paths []string
	for {
		h, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		n := &Node{Type: h.Type, LinkTarget: h.LinkTarget}
		if h.Type == TypeRegular {
			n.Size, n.Executable, n.NarOffset = h.Size, h.Executable, h.Offset
		}
		if h.Path == "" {
			l.Root = n
		} else {
			parent, name := "", h.Path
			if i := strings.LastIndexByte(h.Path, '/'); i >= 0 {
				parent, name = h.Path[:i], h.Path[i+1:]
			}
			for paths[len(paths)-1] != parent {
				dirs, paths = dirs[:len(dirs)-1], paths[:len(paths)-1]
			}
			dirs[len(dirs)-1].Entries[name] = n
		}
		if h.Type == TypeDirectory {
			n.Entries = map[string]*Node{}
			dirs, paths = append(dirs, n), append(paths, h.Path)
		}
	}
	if err := checkEnd(r, nr.Offset()); err != nil {
		return nil, err
	}
	return l, nil
}

// MarshalJSON returns the listing as 2.8 writes a .ls file: compact, keys
// in 2.8's order ({"version":1,"root":…}; type, size, executable,
// narOffset; type, target; type, entries), entries sorted by name.
func (l *Listing) MarshalJSON() ([]byte, error) {
	return l.AppendJSON(nil), nil
}

// AppendJSON appends the .ls JSON of l to dst.
func (l *Listing) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"version":1,"root":`...)
	dst = l.Root.appendJSON(dst)
	return append(dst, '}')
}

func (n *Node) appendJSON(dst []byte) []byte {
	if n == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, `{"type":`...)
	dst = appendJSONString(dst, n.Type.String())
	switch n.Type {
	case TypeRegular:
		dst = append(dst, `,"size":`...)
		dst = strconv.AppendInt(dst, n.Size, 10)
		if n.Executable {
			dst = append(dst, `,"executable":true`...)
		}
		if n.NarOffset != 0 {
			dst = append(dst, `,"narOffset":`...)
			dst = strconv.AppendInt(dst, n.NarOffset, 10)
		}
	case TypeSymlink:
		dst = append(dst, `,"target":`...)
		dst = appendJSONString(dst, n.LinkTarget)
	case TypeDirectory:
		dst = append(dst, `,"entries":{`...)
		names := make([]string, 0, len(n.Entries))
		for name := range n.Entries {
			names = append(names, name)
		}
		slices.Sort(names)
		for i, name := range names {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, name)
			dst = append(dst, ':')
			dst = n.Entries[name].appendJSON(dst)
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// appendJSONString escapes as 2.8 src/libutil/json.cc toJSON does: '"',
// '\\', \n, \r, \t by name, other bytes below 0x20 as \u00XX, everything
// else (including non-ASCII and invalid UTF-8) verbatim.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
