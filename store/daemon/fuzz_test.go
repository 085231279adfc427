package daemon

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/nar/wire"
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
	return [][]byte{
		valid,
		append(slices.Concat(next, act, res, stop), valid...),
		slices.Concat(act, res, errf),
		append(slices.Clone(last), wire.AppendUint64(nil, 0)...),
	}
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
	for i, v := range versions[:3] {
		f.Add(uint8(i), seedBuildResult(v))
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
