package wire_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/nar/wire"
)

func TestStringRoundTrip(t *testing.T) {
	for _, s := range []string{"", "a", "1234567", "12345678", "123456789", strings.Repeat("x", 1000)} {
		b := wire.AppendString(nil, s)
		if len(b)%8 != 0 || len(b) != 8+len(s)+wire.PadLen(uint64(len(s))) {
			t.Errorf("%q: encoded length %d", s, len(b))
		}
		got, err := wire.NewReader(bytes.NewReader(b)).ReadString()
		if err != nil || got != s {
			t.Errorf("%q: read back %q, %v", s, got, err)
		}
	}
	// The empty string is one zero u64 (NIX-PROTOCOLS.md §4.1).
	if b := wire.AppendString(nil, ""); !bytes.Equal(b, make([]byte, 8)) {
		t.Errorf("empty string = %x", b)
	}
	list := []string{"a", "", "bcdefghij"}
	got, err := wire.NewReader(bytes.NewReader(wire.AppendStrings(nil, list))).ReadStrings()
	if err != nil || strings.Join(got, "|") != strings.Join(list, "|") {
		t.Errorf("list: %q, %v", got, err)
	}
}

func TestReaderErrors(t *testing.T) {
	good := wire.AppendString(nil, "abc")
	badPad := append([]byte(nil), good...)
	badPad[len(badPad)-1] = 1
	cases := []struct {
		name  string
		data  []byte
		limit uint64
		want  error
	}{
		{"non-zero padding", badPad, 0, wire.ErrNonZeroPadding},
		{"truncated length", good[:5], 0, io.ErrUnexpectedEOF},
		{"truncated payload", good[:9], 0, io.ErrUnexpectedEOF},
		{"truncated padding", good[:12], 0, io.ErrUnexpectedEOF},
		{"over the limit", wire.AppendString(nil, "too long"), 4, wire.ErrTooLong},
		{"huge length", wire.AppendUint64(nil, 1<<62), 0, wire.ErrTooLong},
		{"empty input", nil, 0, io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := wire.NewReader(bytes.NewReader(tc.data))
			r.MaxString = tc.limit
			_, err := r.ReadString()
			if tc.name == "empty input" {
				_, err = r.ReadUint64()
				if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("got %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	r := wire.NewReader(bytes.NewReader(wire.AppendUint64(nil, 5)))
	r.MaxList = 4
	if _, err := r.ReadStrings(); !errors.Is(err, wire.ErrTooLong) {
		t.Errorf("list over MaxList: %v", err)
	}
}

func TestFramed(t *testing.T) {
	var buf bytes.Buffer
	fw := wire.NewFramedWriter(&buf)
	for _, chunk := range []string{"hello ", "", "framed", " world"} {
		if _, err := fw.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("after") // a reply that follows the stream must stay unread
	r := bytes.NewReader(buf.Bytes())
	got, err := io.ReadAll(wire.NewFramedReader(r))
	if err != nil || string(got) != "hello framed world" {
		t.Fatalf("got %q, %v", got, err)
	}
	rest, _ := io.ReadAll(r)
	if string(rest) != "after" {
		t.Errorf("framed reader read past the terminator: left %q", rest)
	}
	// Truncated inside a frame, and a frame over the bound.
	if _, err := io.ReadAll(wire.NewFramedReader(bytes.NewReader(buf.Bytes()[:12]))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated: %v", err)
	}
	fr := wire.NewFramedReader(bytes.NewReader(wire.AppendUint64(nil, 100)))
	fr.MaxFrame = 10
	if _, err := io.ReadAll(fr); !errors.Is(err, wire.ErrTooLong) {
		t.Errorf("big frame: %v", err)
	}
}

// FuzzReader feeds arbitrary bytes to the decoders: no panic, no
// allocation past the bounds, and what reads as a list re-encodes to the
// bytes it came from.
func FuzzReader(f *testing.F) {
	f.Add(wire.AppendStrings(nil, []string{"a", "bc", ""}))
	f.Add(wire.AppendUint64(nil, 1<<40))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 'x', 1, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := wire.NewReader(bytes.NewReader(data))
		r.MaxString, r.MaxList = 1<<16, 1<<10
		list, err := r.ReadStrings()
		if err == nil {
			enc := wire.AppendStrings(nil, list)
			if !bytes.Equal(enc, data[:len(enc)]) {
				t.Fatalf("re-encoding differs: %x vs %x", enc, data[:len(enc)])
			}
		}
		io.ReadAll(wire.NewFramedReader(bytes.NewReader(data)))
	})
}

// TestDecoderSticky: after the first failure a Decoder returns zero values
// and keeps that first error; Count rejects a count above its limit.
func TestDecoderSticky(t *testing.T) {
	msg := wire.AppendUint64(nil, 7)
	msg = wire.AppendString(msg, "abc")
	msg = wire.AppendUint64(msg, 1000) // a count over the limit below
	msg = wire.AppendString(msg, "never read")
	d := wire.Decoder{R: wire.NewReader(bytes.NewReader(msg))}
	if v := d.U64(); v != 7 {
		t.Fatalf("U64 = %d, want 7", v)
	}
	if s := d.Str(); s != "abc" {
		t.Fatalf("Str = %q", s)
	}
	if n := d.Count("entries", 10); n != 0 || !errors.Is(d.Err, wire.ErrTooLong) {
		t.Fatalf("Count over the limit = %d, err %v; want 0 and ErrTooLong", n, d.Err)
	}
	first := d.Err
	if s, ss, b := d.Str(), d.Strs(), d.Bool(); s != "" || ss != nil || b || d.Err != first {
		t.Fatalf("after a failure: %q %q %v err %v; want zero values and the first error", s, ss, b, d.Err)
	}

	// A message cut short is io.ErrUnexpectedEOF in the middle of a string.
	d = wire.Decoder{R: wire.NewReader(bytes.NewReader(wire.AppendString(nil, "truncated")[:10]))}
	if s := d.Str(); s != "" || !errors.Is(d.Err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated string: %q, %v", s, d.Err)
	}
}
