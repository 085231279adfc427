package serve

import (
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// appendPathInfos encodes infos as a 2.7 server writes a QueryPathInfos
// reply (2.8 nix-store.cc opServe cmdQueryPathInfos).
func appendPathInfos(b []byte, infos []*store.PathInfo) []byte {
	for _, info := range infos {
		b = wire.AppendString(b, info.Path.String())
		b = appendOptPath(b, info.Deriver)
		b = appendPaths(b, info.References)
		b = wire.AppendUint64(b, info.NarSize)
		b = wire.AppendUint64(b, info.NarSize)
		b = wire.AppendString(b, "sha256:"+nixbase32.EncodeToString(info.NarHash[:]))
		b = wire.AppendString(b, info.CA)
		b = wire.AppendStrings(b, info.Sigs)
	}
	return wire.AppendString(b, "")
}

func appendBuildResult(b []byte, r *store.BuildResult) []byte {
	b = wire.AppendUint64(b, uint64(r.Status))
	b = wire.AppendString(b, r.ErrorMsg)
	b = wire.AppendUint64(b, r.TimesBuilt)
	b = wire.AppendBool(b, r.IsNonDeterministic)
	b = wire.AppendUint64(b, uint64(r.StartTime))
	b = wire.AppendUint64(b, uint64(r.StopTime))
	b = wire.AppendUint64(b, uint64(len(r.BuiltOutputs)))
	for name, p := range r.BuiltOutputs {
		b = wire.AppendString(b, "sha256:00!"+name)
		b = wire.AppendString(b, `{"dependentRealisations":{},"id":"sha256:00!`+name+`","outPath":"`+p.Base()+`","signatures":[]}`)
	}
	return b
}

var (
	pA = store.MustParsePath("/nix/store/0ma8fhxk63cyhwcj41v8lfnyp156b6cm-a")
	pB = store.MustParsePath("/nix/store/0mm3g3fsbzq9lnhrk1ak7qjrn620dnw7-b.drv")
)

func sampleInfos() []*store.PathInfo {
	return []*store.PathInfo{
		{Path: pA, Deriver: pB, NarSize: 120, References: []store.Path{pA}, NarHash: [32]byte{1, 2, 3},
			Sigs: []string{"cache.example.org-1:c2ln"}},
		{Path: pB, NarSize: 8, CA: "text:sha256:1n9nsbcpiwsgclysjvxjdm91n8jdpncgc3xb05fy4z9shxd9bp5q",
			References: []store.Path{pA}},
	}
}

func TestReadPathInfosErrors(t *testing.T) {
	good := appendPathInfos(nil, sampleInfos())
	tests := []struct {
		name string
		data []byte
		max  int
		want error
	}{
		{"truncated", good[:len(good)-3], 2, io.ErrUnexpectedEOF},
		{"more infos than asked", good, 1, ErrProtocol},
		{"empty", nil, 2, io.ErrUnexpectedEOF},
		{"bad path", append(wire.AppendString(nil, "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-a"), good...), 2, ErrProtocol},
		{"bad reference", func() []byte {
			b := wire.AppendString(nil, pA.String())
			b = wire.AppendString(b, "")
			return appendPaths(b, []store.Path{{}})
		}(), 2, ErrProtocol},
		{"not a store path", append(wire.AppendString(nil, "/tmp/x"), good...), 2, ErrProtocol},
		{"bad hash", func() []byte {
			b := wire.AppendString(nil, pA.String())
			b = wire.AppendString(b, "")
			b = wire.AppendUint64(b, 0)
			b = wire.AppendUint64(b, 1)
			b = wire.AppendUint64(b, 1)
			b = wire.AppendString(b, "md5:abc")
			return b
		}(), 2, ErrProtocol},
		{"huge string", wire.AppendUint64(nil, 1<<40), 2, wire.ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readPathInfos(wire.NewReader(bytes.NewReader(tt.data)), 7, tt.max)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	got, err := readPathInfos(wire.NewReader(bytes.NewReader(good)), 7, 2)
	if err != nil || !reflect.DeepEqual(got, sampleInfos()) {
		t.Errorf("round trip: %v, %v", got, err)
	}
}

func FuzzReadPathInfos(f *testing.F) {
	f.Add(appendPathInfos(nil, sampleInfos()), uint8(7))
	f.Add(appendPathInfos(nil, nil), uint8(7))
	f.Add(appendPathInfos(nil, sampleInfos()[:1]), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, minor uint8) {
		r := wire.NewReader(bytes.NewReader(data))
		r.MaxString = 1 << 16
		r.MaxList = 1 << 10
		infos, err := readPathInfos(r, uint64(minor%8), 64)
		if err != nil {
			return
		}
		if minor%8 < 4 {
			return // narHash, CA, sigs are not on the wire: no round trip
		}
		// Re-encode and decode again: the same values (the server's
		// hash form may differ from ours, so compare values).
		again, err := readPathInfos(wire.NewReader(bytes.NewReader(appendPathInfos(nil, infos))), 7, 64)
		if err != nil {
			t.Fatalf("re-decoding %v: %v", infos, err)
		}
		if len(again) != len(infos) {
			t.Fatalf("round trip: %d infos, then %d", len(infos), len(again))
		}
		for i := range infos {
			if !reflect.DeepEqual(infos[i], again[i]) {
				t.Fatalf("round trip: %+v became %+v", infos[i], again[i])
			}
		}
	})
}

// TestReadBuildResultErrors: malformed BuildResults fail with the kind of
// error that says what is wrong.
func TestReadBuildResultErrors(t *testing.T) {
	good := appendBuildResult(nil, &store.BuildResult{Status: store.StatusBuilt, BuiltOutputs: map[string]store.Path{"out": pA}})
	head := appendBuildResult(nil, &store.BuildResult{Status: store.StatusBuilt})
	head = head[:len(head)-8] // up to the built outputs' count
	outputs := func(n uint64, kv ...string) []byte {
		b := wire.AppendUint64(bytes.Clone(head), n)
		for _, s := range kv {
			b = wire.AppendString(b, s)
		}
		return b
	}
	for _, tt := range []struct {
		name  string
		minor uint64
		data  []byte
		want  error
	}{
		{"empty", 7, nil, io.ErrUnexpectedEOF},
		{"truncated before 2.3's fields", 3, head[:20], io.ErrUnexpectedEOF},
		{"truncated in the outputs", 7, good[:len(good)-5], io.ErrUnexpectedEOF},
		{"too many outputs", 7, outputs(1 << 20), ErrProtocol},
		{"DrvOutput id without an output name", 7, outputs(1, "sha256:00", `{"outPath":"`+pA.Base()+`"}`), ErrProtocol},
		{"bad output name", 7, outputs(1, "sha256:00!a/b", `{"outPath":"`+pA.Base()+`"}`), ErrProtocol},
		{"realisation not JSON", 7, outputs(1, "sha256:00!out", `{"outPath":`), ErrProtocol},
		{"realisation outPath not a store path", 7, outputs(1, "sha256:00!out", `{"outPath":"/tmp/x"}`), ErrProtocol},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := readBuildResult(wire.NewReader(bytes.NewReader(tt.data)), tt.minor)
			if !errors.Is(err, tt.want) {
				t.Errorf("readBuildResult = %+v, %v; want %v", res, err, tt.want)
			}
		})
	}
}

func FuzzReadBuildResult(f *testing.F) {
	f.Add(appendBuildResult(nil, &store.BuildResult{Status: store.StatusBuilt, TimesBuilt: 1, StartTime: 5, StopTime: 6,
		BuiltOutputs: map[string]store.Path{"out": pA}}), uint8(7))
	f.Add(appendBuildResult(nil, &store.BuildResult{Status: store.StatusPermanentFailure, ErrorMsg: "\x1b[31;1mfailed\x1b[0m"}), uint8(7))
	f.Add(appendBuildResult(nil, &store.BuildResult{})[:16], uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, minor uint8) {
		r := wire.NewReader(bytes.NewReader(data))
		r.MaxString = 1 << 16
		res, err := readBuildResult(r, uint64(minor%8))
		if err != nil {
			return
		}
		if minor%8 < 6 {
			return
		}
		again, err := readBuildResult(wire.NewReader(bytes.NewReader(appendBuildResult(nil, res))), 7)
		if err != nil {
			t.Fatalf("re-decoding %+v: %v", res, err)
		}
		if res.ErrorMsg != again.ErrorMsg || !reflect.DeepEqual(res.BuiltOutputs, again.BuiltOutputs) {
			t.Fatalf("round trip: %+v became %+v", res, again)
		}
	})
}

// rwBytes is a transport whose server side is fixed bytes.
type rwBytes struct {
	io.Reader
	io.Writer
}

func FuzzHandshake(f *testing.F) {
	f.Add(wire.AppendUint64(wire.AppendUint64(nil, magic2), 0x207))
	f.Add([]byte("Welcome to the machine\nlast login: never\n"))
	f.Add(wire.AppendUint64(wire.AppendUint64(nil, magic2), 0x300))
	f.Add([]byte{0xcb, 0xee})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := NewClient(context.Background(), rwBytes{bytes.NewReader(data), io.Discard}, Options{})
		if err != nil {
			return
		}
		if c.ServerVersion()>>8 != 2 {
			t.Fatalf("accepted version %#x", c.ServerVersion())
		}
		// The rest of the bytes as a reply to a query: must not panic.
		c.QueryPathInfos(context.Background(), []store.Path{pA, pB})
	})
}
