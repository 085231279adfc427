package nar_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/nbuild/nbuild/nar"
)

// TestHand hands NARs from a stream that carries them back to back.
func TestHand(t *testing.T) {
	a := dump(t, makeFixture(t))
	b := dump(t, "nix_test.go")
	stream := append(append(append([]byte(nil), a...), b...), "rest"...)
	src := bufio.NewReader(bytes.NewReader(stream))
	for i, want := range [][]byte{a, b} {
		var got []byte
		cerr, nerr := nar.Hand(src, func(r io.Reader) (err error) {
			got, err = io.ReadAll(r)
			return err
		})
		if cerr != nil || nerr != nil || !bytes.Equal(got, want) {
			t.Fatalf("NAR %d: %d bytes, %v, %v; want %d bytes", i, len(got), cerr, nerr, len(want))
		}
	}
	if rest, _ := io.ReadAll(src); string(rest) != "rest" {
		t.Errorf("read past the NARs: %q left", rest)
	}

	// consume stopping early: its error, and the NAR's ErrNotConsumed.
	stop := errors.New("stop")
	cerr, nerr := nar.Hand(bytes.NewReader(a), func(r io.Reader) error {
		r.Read(make([]byte, 10))
		return stop
	})
	if cerr != stop || !errors.Is(nerr, nar.ErrNotConsumed) {
		t.Errorf("early stop: %v, %v", cerr, nerr)
	}
	// A NAR cut short: consume sees the NAR's error.
	cerr, nerr = nar.Hand(bytes.NewReader(a[:len(a)/2]), func(r io.Reader) error {
		_, err := io.ReadAll(r)
		return err
	})
	if nerr == nil || !errors.Is(cerr, nerr) {
		t.Errorf("truncated: consume %v, NAR %v", cerr, nerr)
	}
}
