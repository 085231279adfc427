package drv

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/nbuild/nbuild/store"
)

// FuzzParse: Parse never panics; whatever it accepts is written back byte
// for byte and parses to the same value, with and without an interner; and
// nothing computed from an accepted derivation panics. Crashers are kept in
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, p := range fixtureDrvs(f) {
		f.Add(readFixture(f, p))
	}
	f.Add([]byte(goodText))
	f.Add([]byte(`Derive([("out","","r:sha256","")],[],[],"s","b",["\"\\\n\r\t"],[("a","\n")])`))
	f.Add([]byte(`Derive([("out","","r:sha256","impure")],[],[],"s","b",[],[])`))
	intern := &Parser{Intern: func(b []byte) string { return string(b) }}
	shared := &Parser{}
	errLoad := errors.New("no store")
	h := NewHasher(func(string) (*Derivation, error) { return nil, errLoad })
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Offset < 0 || pe.Offset > len(data) {
				t.Fatalf("bad error %#v", err)
			}
			if _, err2 := intern.Parse(data); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("Intern changes the error: %v vs %v", err, err2)
			}
			if _, err2 := shared.ParseShared(bytes.Clone(data)); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("ParseShared changes the error: %v vs %v", err, err2)
			}
			return
		}
		in := bytes.Clone(data)
		d3, err := shared.ParseShared(in)
		if err != nil || !reflect.DeepEqual(d, d3) || !bytes.Equal(in, data) {
			t.Fatalf("ParseShared differs or modified its input: %v", err)
		}
		out := d.AppendATerm(nil)
		if !bytes.Equal(out, data) {
			t.Fatalf("round trip:\n got %q\nwant %q", out, data)
		}
		d2, err := intern.Parse(out)
		if err != nil || !reflect.DeepEqual(d, d2) {
			t.Fatalf("reparse with Intern: %v", err)
		}
		if _, err := d.Kind(); err != nil {
			t.Fatalf("Parse accepted what Kind rejects: %v", err)
		}
		_, _ = DrvPath(d)
		_, _ = h.OutputPaths(d)
		_, _ = d.Scheduling()
		_, _ = ShowJSON(map[string]*Derivation{inDrv: d})
	})
}

// FuzzEscape: the word-at-a-time escaper equals the plain definition of
// printString, and Parse reads its output back.
func FuzzEscape(f *testing.F) {
	f.Add("plain")
	f.Add("q\" b\\ n\n r\r t\t \x01\x0e\x7f é 12345678\n")
	f.Fuzz(func(t *testing.T, s string) {
		want := []byte{'"'}
		for i := 0; i < len(s); i++ {
			if e := escapes[s[i]]; e != 0 {
				want = append(want, '\\', e)
			} else {
				want = append(want, s[i])
			}
		}
		want = append(want, '"')
		got := appendEscaped(nil, s)
		if !bytes.Equal(got, want) {
			t.Fatalf("appendEscaped(%q) = %q, want %q", s, got, want)
		}
		d := &Derivation{Outputs: []Output{{Name: "out", Path: store.MustParsePath(outPath)}}, Platform: "p", Builder: s}
		back, err := Parse(d.AppendATerm(nil))
		if err != nil || back.Builder != s {
			t.Fatalf("Parse of escaped %q: %v, %q", s, err, back)
		}
	})
}
