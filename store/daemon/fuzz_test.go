package daemon

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
)

// replayConn is a Conn whose daemon side is the fixed bytes data and whose
// requests go nowhere, at protocol version v, with small bounds.
func replayConn(data []byte, v uint64) *Conn {
	rw := struct {
		io.Reader
		io.Writer
		io.Closer
	}{bytes.NewReader(data), io.Discard, io.NopCloser(nil)}
	c := &Conn{rwc: rw, br: bufio.NewReader(rw), bw: bufio.NewWriter(rw), logger: discard{}, version: v}
	c.r = wire.NewReader(c.br)
	c.r.MaxString = 1 << 16
	c.r.MaxList = 1 << 12
	return c
}

// Seeds built from what Nix 2.8 sends (NIX-PROTOCOLS.md §14).
func seedPathInfo() []byte {
	var b []byte
	b = wire.AppendString(b, "/nix/store/j8mbjzzswhfhh9hjqjxsha0x7mbgp78i-plan-lib-b.drv")
	b = wire.AppendString(b, strings.Repeat("ce", 32))
	b = wire.AppendStrings(b, []string{"/nix/store/7xb3pd8wiv2nh8gdfvs4y3z9kcn0b6p4-hello-2.12"})
	b = wire.AppendUint64(b, 1795402206)
	b = wire.AppendUint64(b, 512)
	b = wire.AppendUint64(b, 1)
	b = wire.AppendStrings(b, []string{"cache.nixos.org-1:abc="})
	return wire.AppendString(b, "")
}

// malformedPathInfos are seeds every decoder must refuse: cut short, a
// hash that is not hex, a reference that is not a store path, a list
// count beyond any bound.
func malformedPathInfos() [][]byte {
	good := seedPathInfo()
	badHash := wire.AppendString(nil, "")
	badHash = wire.AppendString(badHash, strings.Repeat("zz", 32))
	badRef := wire.AppendString(nil, "")
	badRef = wire.AppendString(badRef, strings.Repeat("ce", 32))
	badRef = wire.AppendStrings(badRef, []string{"/tmp/not-a-store-path"})
	huge := wire.AppendString(nil, "")
	huge = wire.AppendString(huge, strings.Repeat("ce", 32))
	huge = wire.AppendUint64(huge, 1<<40)
	return [][]byte{good[:len(good)/2], badHash, badRef, huge}
}

func seedStderr() [][]byte {
	act := wire.AppendUint64(nil, stderrStartActivity)
	act = wire.AppendUint64(act, 42)
	act = wire.AppendUint64(act, 3)
	act = wire.AppendUint64(act, ActBuild)
	act = wire.AppendString(act, "building '/nix/store/x.drv'")
	act = wire.AppendUint64(act, 2)
	act = wire.AppendUint64(act, 1)
	act = wire.AppendString(act, "/nix/store/mp1slcmdqq3d0fykpbaff760qc4bywwc-daemontest-ok.drv")
	act = wire.AppendUint64(act, 0)
	act = wire.AppendUint64(act, 1)
	act = wire.AppendUint64(act, 0)
	res := wire.AppendUint64(nil, stderrResult)
	res = wire.AppendUint64(res, 42)
	res = wire.AppendUint64(res, ResBuildLogLine)
	res = wire.AppendUint64(res, 1)
	res = wire.AppendUint64(res, 1)
	res = wire.AppendString(res, "hello-from-build")
	stop := wire.AppendUint64(wire.AppendUint64(nil, stderrStopActivity), 42)
	next := wire.AppendString(wire.AppendUint64(nil, stderrNext), "warning: something\n")
	errf := wire.AppendUint64(nil, stderrError)
	errf = wire.AppendString(errf, "Error")
	errf = wire.AppendUint64(errf, 0)
	errf = wire.AppendString(errf, "Error")
	errf = wire.AppendString(errf, "path '\x1b[35;1m/nix/store/x-bogus\x1b[0m' is not valid")
	errf = wire.AppendUint64(errf, 0)
	errf = wire.AppendUint64(errf, 1)
	errf = wire.AppendUint64(errf, 0)
	errf = wire.AppendString(errf, "while doing it")
	last := wire.AppendUint64(nil, stderrLast)
	valid := append(slices.Clone(last), wire.AppendUint64(nil, 1)...)
	valid = append(valid, seedPathInfo()...)
	seeds := [][]byte{
		valid,
		append(slices.Concat(next, act, res, stop), valid...),
		slices.Concat(act, res, errf),
		append(slices.Clone(last), wire.AppendUint64(nil, 0)...),
		// Malformed: an unknown message type, an activity and an
		// error frame cut short, a validity flag that is not a bool,
		// and a path info that does not decode after STDERR_LAST.
		append(wire.AppendUint64(nil, 0x12345678), valid...),
		act[:len(act)-4],
		errf[:len(errf)/2],
		append(slices.Clone(last), wire.AppendUint64(nil, 7)...),
	}
	for _, b := range malformedPathInfos() {
		seeds = append(seeds, slices.Concat(last, wire.AppendUint64(nil, 1), b))
	}
	return seeds
}

func seedBuildResult(v uint64) []byte {
	var b []byte
	b = wire.AppendUint64(b, 0)
	b = wire.AppendString(b, "")
	if v >= 1<<8|29 {
		for _, x := range []uint64{1, 0, 100, 105} {
			b = wire.AppendUint64(b, x)
		}
	}
	if v >= 1<<8|37 {
		b = wire.AppendUint64(b, 1)
		b = wire.AppendUint64(b, 1500)
		b = wire.AppendUint64(b, 0)
	}
	b = wire.AppendUint64(b, 1)
	b = wire.AppendString(b, "sha256:00!out")
	return wire.AppendString(b, `{"dependentRealisations":{},"id":"sha256:00!out","outPath":"8ipix5gylacngpx1cjpq4gji136qrykk-daemontest-ok","signatures":[]}`)
}

// FuzzStderrLoop feeds arbitrary daemon replies to QueryPathInfo: the
// stderr loop and the PathInfo decoder must fail cleanly.
func FuzzStderrLoop(f *testing.F) {
	for _, s := range seedStderr() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := replayConn(data, DefaultVersion)
		info, err := c.QueryPathInfo(context.Background(), testPath)
		if err == nil && info == nil {
			t.Fatal("nil info without error")
		}
		if err != nil && !strings.Contains(err.Error(), "QueryPathInfo") {
			t.Fatalf("error does not name the op: %v", err)
		}
	})
}

// FuzzPathInfo decodes a ValidPathInfo and round-trips what it accepts.
func FuzzPathInfo(f *testing.F) {
	f.Add(seedPathInfo())
	for _, b := range malformedPathInfos() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := wire.NewReader(bytes.NewReader(data))
		r.MaxString, r.MaxList = 1<<16, 1<<12
		info, err := readPathInfo(r, testPath)
		if err != nil {
			return
		}
		again, err := readPathInfo(wire.NewReader(bytes.NewReader(appendPathInfo(nil, info))), testPath)
		if err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		if again.Deriver != info.Deriver || again.NarHash != info.NarHash || again.NarSize != info.NarSize ||
			!slices.Equal(again.References, info.References) || again.RegistrationTime != info.RegistrationTime ||
			again.Ultimate != info.Ultimate || !slices.Equal(again.Sigs, info.Sigs) || again.CA != info.CA {
			t.Fatalf("round trip: %+v != %+v", again, info)
		}
	})
}

// FuzzBuildResult decodes BuildResults at the versions that change them.
func FuzzBuildResult(f *testing.F) {
	versions := []uint64{1<<8 | 34, 1<<8 | 37, 1<<8 | 38, 1<<8 | 30}
	for i, v := range versions {
		good := seedBuildResult(v)
		f.Add(uint8(i), good)
		f.Add(uint8(i), good[:len(good)-3])                                  // cut short
		f.Add(uint8(i), append(good[:len(good)-1:len(good)-1], 'x', '!', 0)) // non-zero padding
	}
	f.Fuzz(func(t *testing.T, vi uint8, data []byte) {
		v := versions[int(vi)%len(versions)]
		r := wire.NewReader(bytes.NewReader(data))
		r.MaxString, r.MaxList = 1<<16, 1<<12
		res, err := readBuildResult(r, v)
		if err == nil && res == nil {
			t.Fatal("nil result without error")
		}
		if err == nil {
			for name, p := range res.BuiltOutputs {
				if name == "" || p.IsZero() {
					t.Fatalf("accepted output %q -> %v", name, p)
				}
			}
		}
	})
}

// FuzzHandshake feeds arbitrary greetings to NewConn.
func FuzzHandshake(f *testing.F) {
	var b []byte
	b = wire.AppendUint64(b, workerMagic2)
	b = wire.AppendUint64(b, DefaultVersion)
	b = wire.AppendString(b, "2.8.0")
	b = wire.AppendUint64(b, stderrLast)
	f.Add(uint8(0), b)
	var n []byte
	n = wire.AppendUint64(n, workerMagic2)
	n = wire.AppendUint64(n, 1<<8|38)
	n = wire.AppendStrings(n, []string{"x"})
	n = wire.AppendString(n, "2.30.0")
	n = wire.AppendUint64(n, 1)
	n = wire.AppendUint64(n, stderrLast)
	f.Add(uint8(1), n)
	// Malformed: the client's magic echoed, a daemon older than
	// MinVersion, a reply cut after the magic, a version string longer
	// than the bound, an error frame where STDERR_LAST was due.
	f.Add(uint8(0), append(wire.AppendUint64(nil, workerMagic1), b[8:]...))
	f.Add(uint8(0), wire.AppendUint64(wire.AppendUint64(nil, workerMagic2), 1<<8|9))
	f.Add(uint8(1), b[:12])
	f.Add(uint8(0), wire.AppendUint64(slices.Clone(b[:16]), 1<<20))
	f.Add(uint8(0), append(slices.Clone(b[:len(b)-8]), seedStderr()[2]...))
	f.Fuzz(func(t *testing.T, announce uint8, data []byte) {
		rw := struct {
			io.Reader
			io.Writer
			io.Closer
		}{bytes.NewReader(data), io.Discard, io.NopCloser(nil)}
		v := uint64(DefaultVersion)
		if announce%2 == 1 {
			v = MaxVersion
		}
		c, err := NewConn(context.Background(), rw, Options{Version: v, SkipSetOptions: true, MaxString: 1 << 16, MaxList: 1 << 12})
		if err == nil && (c.Version() < MinVersion || c.Version() > v) {
			t.Fatalf("negotiated %#x announcing %#x", c.Version(), v)
		}
	})
}

// TestReadBuildResultErrors: malformed BuildResults fail with the kind of
// error that says what is wrong, at the versions that change the format.
func TestReadBuildResultErrors(t *testing.T) {
	v34, v37 := uint64(1<<8|34), uint64(1<<8|37)
	good := seedBuildResult(v34)
	// head is a 1.34 BuildResult up to its built outputs' count.
	head := good[:8+8+4*8]
	outputs := func(n uint64, kv ...string) []byte {
		b := wire.AppendUint64(slices.Clone(head), n)
		for _, s := range kv {
			b = wire.AppendString(b, s)
		}
		return b
	}
	for _, tt := range []struct {
		name string
		v    uint64
		data []byte
		want error
	}{
		{"empty", v34, nil, io.ErrUnexpectedEOF}, // a reply is due: no EOF is clean
		{"truncated in the error message", v34, wire.AppendUint64(wire.AppendUint64(nil, 0), 100), io.ErrUnexpectedEOF},
		{"truncated in the outputs", v34, good[:len(good)-5], io.ErrUnexpectedEOF},
		{"too many outputs", v34, outputs(1 << 20), wire.ErrTooLong},
		{"DrvOutput id without an output name", v34, outputs(1, "sha256:00", `{"outPath":"8ipix5gylacngpx1cjpq4gji136qrykk-x"}`), ErrProtocol},
		{"DrvOutput id ending in !", v34, outputs(1, "sha256:00!", `{"outPath":"8ipix5gylacngpx1cjpq4gji136qrykk-x"}`), ErrProtocol},
		{"realisation not JSON", v34, outputs(1, "sha256:00!out", `{"outPath":`), ErrProtocol},
		{"realisation outPath not a store path", v34, outputs(1, "sha256:00!out", `{"outPath":"/tmp/x"}`), store.ErrInvalidPath},
		{"bad optional tag", v37, func() []byte {
			b := slices.Clone(head)
			return wire.AppendUint64(b, 2)
		}(), ErrProtocol},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := wire.NewReader(bytes.NewReader(tt.data))
			r.MaxString, r.MaxList = 1<<16, 1<<12
			res, err := readBuildResult(r, tt.v)
			if !errors.Is(err, tt.want) {
				t.Errorf("readBuildResult = %+v, %v; want %v", res, err, tt.want)
			}
		})
	}
}
