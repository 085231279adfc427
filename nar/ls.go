package nar

import (
	"bufio"
	"fmt"
	"io"
)

// WriteLongListing writes the entries of the NAR read from r as `nix nar
// ls -lR ARCHIVE /` (Nix 2.8) prints them: one line an entry, in archive
// order, with Nix's permission string, the size of a regular file
// (right-aligned in 20 columns, 0 for others) and the path from "./",
// a symlink's target after " -> ". The root itself is not listed. It
// reads r to the end of the archive and stops at the first error.
func WriteLongListing(w io.Writer, r io.Reader) error {
	bw := bufio.NewWriter(w)
	nr := NewReader(r)
	for {
		h, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if h.Path == "" {
			continue // Nix lists the root's contents, not the root
		}
		switch h.Type {
		case TypeDirectory:
			fmt.Fprintf(bw, "dr-xr-xr-x %20d ./%s\n", 0, h.Path)
		case TypeSymlink:
			fmt.Fprintf(bw, "lrwxrwxrwx %20d ./%s -> %s\n", 0, h.Path, h.LinkTarget)
		default:
			perm := "-r--r--r--"
			if h.Executable {
				perm = "-r-xr-xr-x"
			}
			fmt.Fprintf(bw, "%s %20d ./%s\n", perm, h.Size, h.Path)
		}
	}
	return bw.Flush()
}
