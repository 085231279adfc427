package nar_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/nbuild/nbuild/nar"
)

// strs encodes each string as a NAR token (u64 length, bytes, zero padding).
func strs(ss ...string) []byte {
	var b []byte
	for _, s := range ss {
		b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
		b = append(b, make([]byte, (8-len(s)%8)%8)...)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// Pieces of NARs, as token lists.
var (
	hdr = []string{"nix-archive-1"}
)

func file(contents string) []string {
	return []string{"(", "type", "regular", "contents", contents, ")"}
}

func entry(name string, node []string) []string {
	return append(append([]string{"entry", "(", "name", name, "node"}, node...), ")")
}

func dir(entries ...[]string) []string {
	out := []string{"(", "type", "directory"}
	for _, e := range entries {
		out = append(out, e...)
	}
	return append(out, ")")
}

func link(target string) []string {
	return []string{"(", "type", "symlink", "target", target, ")"}
}

func narOf(node []string) []byte { return strs(append(append([]string{}, hdr...), node...)...) }

func TestReaderEntries(t *testing.T) {
	data := narOf(dir(
		entry("a", file("hello")),
		entry("b", dir(entry("c", link("/abs")))),
		entry("x", []string{"(", "type", "regular", "executable", "", "contents", "", ")"}),
	))
	nr := nar.NewReader(bytes.NewReader(data))
	type row struct {
		path   string
		typ    nar.Type
		exec   bool
		size   int64
		target string
		body   string
	}
	var got []row
	for {
		h, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(nr)
		got = append(got, row{h.Path, h.Type, h.Executable, h.Size, h.LinkTarget, string(body)})
	}
	want := []row{
		{"", nar.TypeDirectory, false, 0, "", ""},
		{"a", nar.TypeRegular, false, 5, "", "hello"},
		{"b", nar.TypeDirectory, false, 0, "", ""},
		{"b/c", nar.TypeSymlink, false, 0, "/abs", ""},
		{"x", nar.TypeRegular, true, 0, "", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if nr.Offset() != int64(len(data)) {
		t.Errorf("Offset = %d, want %d", nr.Offset(), len(data))
	}
}

func TestSingleFileOffset(t *testing.T) {
	data := narOf(file("abc"))
	h, err := nar.NewReader(bytes.NewReader(data)).Next()
	if err != nil {
		t.Fatal(err)
	}
	if h.Offset != 96 { // NIX-PROTOCOLS.md §4.1
		t.Errorf("Offset = %d, want 96", h.Offset)
	}
}

// TestNeverReadsPastEnd: a NAR followed by more data, read one byte per
// Read call, leaves the following data unread.
func TestNeverReadsPastEnd(t *testing.T) {
	data := narOf(dir(entry("a", file("hello")), entry("b", link("x"))))
	tail := []byte("REPLY")
	src := bytes.NewReader(cat(data, tail))
	var out bytes.Buffer
	n, err := nar.Copy(&out, iotest.OneByteReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(data)) || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("Copy copied %d bytes, want %d", n, len(data))
	}
	rest, _ := io.ReadAll(src)
	if string(rest) != "REPLY" {
		t.Fatalf("after the NAR the stream holds %q", rest)
	}
}

// badCase is a NAR that every consumer must reject.
type badCase struct {
	name string
	data []byte
	want error
	opts nar.ReaderOptions
}

func badCases() []badCase {
	valid := narOf(dir(entry("a", file("hello"))))
	nonZeroPadName := strs("nix-archive-1", "(", "type", "directory", "entry", "(", "name")
	nonZeroPadName = append(nonZeroPadName, strs("abc")...)
	nonZeroPadName[len(nonZeroPadName)-1] = 1
	nonZeroPadContents := narOf(file("abc"))
	nonZeroPadContents[96+3] = 'x' // first padding byte after "abc"
	return []badCase{
		{"wrong magic", strs("nix-archive-2", "(", "type", "regular", "contents", "", ")"), nar.ErrBadMagic, nar.ReaderOptions{}},
		{"magic of wrong length", strs("nix-archive", "("), nar.ErrBadMagic, nar.ReaderOptions{}},
		{"huge magic length", binary.LittleEndian.AppendUint64(nil, 1<<62), nar.ErrBadMagic, nar.ReaderOptions{}},
		{"empty input", nil, nar.ErrTruncated, nar.ReaderOptions{}},
		{"empty name", narOf(dir(entry("", file("")))), nar.ErrInvalidName, nar.ReaderOptions{}},
		{"dot name", narOf(dir(entry(".", file("")))), nar.ErrInvalidName, nar.ReaderOptions{}},
		{"dotdot name", narOf(dir(entry("..", file("")))), nar.ErrInvalidName, nar.ReaderOptions{}},
		{"traversal name", narOf(dir(entry("../../etc/passwd", file("pwned")))), nar.ErrInvalidName, nar.ReaderOptions{}},
		{"slash in name", narOf(dir(entry("a/b", file("")))), nar.ErrInvalidName, nar.ReaderOptions{}},
		{"NUL in name", narOf(dir(entry("a\x00b", file("")))), nar.ErrInvalidName, nar.ReaderOptions{}},
		{"unsorted entries", narOf(dir(entry("b", file("")), entry("a", file("")))), nar.ErrUnsorted, nar.ReaderOptions{}},
		{"duplicate entries", narOf(dir(entry("a", file("")), entry("a", file("")))), nar.ErrDuplicateName, nar.ReaderOptions{}},
		{"symlink then directory of the same name", narOf(dir(entry("a", link("/tmp")), entry("a", dir(entry("f", file("x")))))), nar.ErrDuplicateName, nar.ReaderOptions{}},
		{"name over limit", narOf(dir(entry(strings.Repeat("n", 256), file("")))), nar.ErrTooLong, nar.ReaderOptions{}},
		{"file over limit", narOf(file("0123456789")), nar.ErrTooLong, nar.ReaderOptions{MaxEntrySize: 9}},
		{"huge file length", cat(strs("nix-archive-1", "(", "type", "regular", "contents"), binary.LittleEndian.AppendUint64(nil, 1<<63)), nar.ErrTooLong, nar.ReaderOptions{}},
		{"target over limit", narOf(link(strings.Repeat("t", 4096))), nar.ErrTooLong, nar.ReaderOptions{}},
		{"too deep", narOf(dir(entry("a", dir(entry("b", dir()))))), nar.ErrTooDeep, nar.ReaderOptions{MaxDepth: 2}},
		{"non-zero padding in a name", nonZeroPadName, nar.ErrNonZeroPadding, nar.ReaderOptions{}},
		{"non-zero padding after contents", nonZeroPadContents, nar.ErrNonZeroPadding, nar.ReaderOptions{}},
		{"truncated in a token", valid[:len(valid)-3], nar.ErrTruncated, nar.ReaderOptions{}},
		{"truncated before the end", valid[:len(valid)-8], nar.ErrTruncated, nar.ReaderOptions{}},
		{"truncated in contents", narOf(file("hello world"))[:100], nar.ErrTruncated, nar.ReaderOptions{}},
		{"executable with a value", strs("nix-archive-1", "(", "type", "regular", "executable", "1", "contents", "", ")"), nar.ErrBadExecutable, nar.ReaderOptions{}},
		{"executable after contents", strs("nix-archive-1", "(", "type", "regular", "contents", "", "executable", "", ")"), nar.ErrUnexpectedTag, nar.ReaderOptions{}},
		{"two type fields", strs("nix-archive-1", "(", "type", "regular", "type", "regular", "contents", "", ")"), nar.ErrUnexpectedTag, nar.ReaderOptions{}},
		{"unknown type", strs("nix-archive-1", "(", "type", "fifo", ")"), nar.ErrUnexpectedTag, nar.ReaderOptions{}},
		{"missing open paren", strs("nix-archive-1", "type", "regular", "contents", "", ")"), nar.ErrUnexpectedTag, nar.ReaderOptions{}},
		{"entry without name", strs("nix-archive-1", "(", "type", "directory", "entry", "(", "node", "(", "type", "regular", "contents", "", ")", ")", ")"), nar.ErrUnexpectedTag, nar.ReaderOptions{}},
		{"garbage in directory", strs("nix-archive-1", "(", "type", "directory", "entri", ")"), nar.ErrUnexpectedTag, nar.ReaderOptions{}},
		{"long token where a tag is due", strs("nix-archive-1", "(", "type", strings.Repeat("r", 100)), nar.ErrUnexpectedTag, nar.ReaderOptions{}},
		{"empty symlink target", narOf(link("")), nar.ErrInvalidTarget, nar.ReaderOptions{}},
		{"NUL in symlink target", narOf(link("a\x00b")), nar.ErrInvalidTarget, nar.ReaderOptions{}},
	}
}

func readAll(data []byte, opts nar.ReaderOptions) error {
	nr := nar.NewReaderOptions(bytes.NewReader(data), opts)
	for {
		_, err := nr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, nr); err != nil {
			return err
		}
	}
}

func TestReaderRejects(t *testing.T) {
	for _, c := range badCases() {
		t.Run(c.name, func(t *testing.T) {
			err := readAll(c.data, c.opts)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			var ne *nar.Error
			if !errors.As(err, &ne) {
				t.Fatalf("err %T is not a *nar.Error", err)
			}
			if ne.Offset < 0 || ne.Offset > int64(len(c.data)) {
				t.Errorf("offset %d outside the input", ne.Offset)
			}
			t.Log(err)
			// Copy rejects it too.
			if _, err := nar.CopyOptions(io.Discard, bytes.NewReader(c.data), c.opts); !errors.Is(err, c.want) {
				t.Errorf("Copy: err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestStickyError(t *testing.T) {
	nr := nar.NewReader(bytes.NewReader(narOf(dir(entry("b", file("")), entry("a", file(""))))))
	var first error
	for range 5 {
		_, err := nr.Next()
		if err != nil {
			if first == nil {
				first = err
			} else if err != first {
				t.Fatalf("error changed: %v then %v", first, err)
			}
		}
	}
	if !errors.Is(first, nar.ErrUnsorted) {
		t.Fatalf("got %v", first)
	}
}

func TestTrailingData(t *testing.T) {
	data := cat(narOf(file("x")), []byte("garbage"))
	if _, err := nar.List(bytes.NewReader(data)); !errors.Is(err, nar.ErrTrailingData) {
		t.Errorf("List: %v", err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	if err := nar.Restore(bytes.NewReader(data), dst, nar.RestoreOptions{}); !errors.Is(err, nar.ErrTrailingData) {
		t.Errorf("Restore: %v", err)
	}
	assertEmpty(t, filepath.Dir(dst))
	if err := nar.Restore(bytes.NewReader(data), dst, nar.RestoreOptions{AllowTrailing: true}); err != nil {
		t.Errorf("Restore with AllowTrailing: %v", err)
	}
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind in %s: %s", dir, e.Name())
	}
}

// TestRestoreRejects: every bad NAR leaves nothing inside the target's
// parent nor outside it.
func TestRestoreRejects(t *testing.T) {
	cases := append(badCases(),
		badCase{"traversal after valid files", narOf(dir(entry("a", file("ok")), entry("b", dir(entry("..", file("pwned")))))), nar.ErrInvalidName, nar.ReaderOptions{}},
		badCase{"symlink then file through it", narOf(dir(entry("l", link("../outside")), entry("l/x", file("pwned")))), nar.ErrInvalidName, nar.ReaderOptions{}},
		badCase{"symlink then same name as file", narOf(dir(entry("l", link("../outside")), entry("l", file("pwned")))), nar.ErrDuplicateName, nar.ReaderOptions{}},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			parent := filepath.Join(base, "parent")
			if err := os.Mkdir(parent, 0o755); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(parent, "out")
			err := nar.Restore(bytes.NewReader(c.data), dst, nar.RestoreOptions{ReaderOptions: c.opts})
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			assertEmpty(t, parent)
			if _, err := os.Lstat(outside); err == nil {
				t.Errorf("restore wrote %s", outside)
			}
			entries, _ := os.ReadDir(base)
			if len(entries) != 1 {
				t.Errorf("restore left %d entries in %s", len(entries), base)
			}
		})
	}
}

func TestRestoreTargetExists(t *testing.T) {
	dst := t.TempDir()
	err := nar.Restore(bytes.NewReader(narOf(file("x"))), dst, nar.RestoreOptions{})
	if !errors.Is(err, os.ErrExist) {
		t.Fatalf("err = %v", err)
	}
}

func TestRestoreKinds(t *testing.T) {
	for _, c := range []struct {
		name string
		node []string
	}{
		{"file", file("hello")},
		{"symlink", link("/nonexistent/target")},
		{"empty dir", dir()},
		{"exec", []string{"(", "type", "regular", "executable", "", "contents", "#!/bin/sh", ")"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := narOf(c.node)
			dst := filepath.Join(t.TempDir(), "out")
			if err := nar.Restore(bytes.NewReader(data), dst, nar.RestoreOptions{}); err != nil {
				t.Fatal(err)
			}
			if got := dump(t, dst); !bytes.Equal(got, data) {
				t.Errorf("dump(restore(nar)) != nar")
			}
		})
	}
}

func TestWriterRejects(t *testing.T) {
	cases := []struct {
		name    string
		headers []nar.Header
		want    error
	}{
		{"unsorted", []nar.Header{{Type: nar.TypeDirectory}, {Path: "b", Type: nar.TypeDirectory}, {Path: "a", Type: nar.TypeDirectory}}, nar.ErrUnsorted},
		{"duplicate", []nar.Header{{Type: nar.TypeDirectory}, {Path: "a", Type: nar.TypeDirectory}, {Path: "a", Type: nar.TypeSymlink, LinkTarget: "x"}}, nar.ErrDuplicateName},
		{"child of a file", []nar.Header{{Type: nar.TypeDirectory}, {Path: "a", Type: nar.TypeRegular}, {Path: "a/b", Type: nar.TypeRegular}}, nar.ErrWriteOrder},
		{"not root first", []nar.Header{{Path: "a", Type: nar.TypeRegular}}, nar.ErrWriteOrder},
		{"second root", []nar.Header{{Type: nar.TypeRegular}, {Path: "a", Type: nar.TypeRegular}}, nar.ErrWriteOrder},
		{"root again in a directory", []nar.Header{{Type: nar.TypeDirectory}, {Type: nar.TypeDirectory}}, nar.ErrWriteOrder},
		{"root again as /", []nar.Header{{Type: nar.TypeDirectory}, {Path: "a", Type: nar.TypeDirectory}, {Path: "/", Type: nar.TypeRegular}}, nar.ErrWriteOrder},
		{"invalid name", []nar.Header{{Type: nar.TypeDirectory}, {Path: "a/../b", Type: nar.TypeRegular}}, nar.ErrInvalidName},
		{"short contents", []nar.Header{{Type: nar.TypeDirectory}, {Path: "a", Type: nar.TypeRegular, Size: 3}, {Path: "b", Type: nar.TypeRegular}}, nar.ErrShortContents},
		{"empty target", []nar.Header{{Type: nar.TypeSymlink}}, nar.ErrInvalidTarget},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			nw := nar.NewWriter(io.Discard)
			var err error
			for i := range c.headers {
				if err = nw.WriteHeader(&c.headers[i]); err != nil {
					break
				}
			}
			if err == nil {
				err = nw.Close()
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
	nw := nar.NewWriter(io.Discard)
	nw.WriteHeader(&nar.Header{Type: nar.TypeRegular, Size: 2})
	if _, err := nw.Write([]byte("abc")); !errors.Is(err, nar.ErrWriteTooLong) {
		t.Errorf("long write: %v", err)
	}
}
