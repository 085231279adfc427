package copy

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/nar/compress"
	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/storetest"
)

func TestPname(t *testing.T) {
	for name, want := range map[string]string{
		"hello-2.12":               "hello",
		"deltatest-c-1.0":          "deltatest-c",
		"copytest-a":               "copytest-a",
		"perl5.36.0-Test-Foo":      "perl5.36.0-Test-Foo",
		"0ad-0.0.26":               "0ad",
		"nixos-system-pi-23.05pre": "nixos-system-pi",
		"foo--bar":                 "foo",
		"x":                        "x",
	} {
		if got := pname(name); got != want {
			t.Errorf("pname(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestMatchPredecessors(t *testing.T) {
	p := func(s string) *store.PathInfo {
		return &store.PathInfo{Path: store.MustParsePath("/nix/store/" + s), NarSize: 100}
	}
	missing := []*store.PathInfo{
		p("00000000000000000000000000000000-hello-2.13"),
		p("11111111111111111111111111111111-libfoo-1.0"),
		p("22222222222222222222222222222222-unrelated"),
	}
	hints := []string{
		"33333333333333333333333333333333-hello-2.12",
		"44444444444444444444444444444444-hello-2.13",
		"55555555555555555555555555555555-hello-2.13.drv",
		"00000000000000000000000000000000-hello-2.13", // itself (not valid there)
		"66666666666666666666666666666666-libfoo-1.0",
		"77777777777777777777777777777777-libfoo-1.0-dev",
		"not a store entry",
		"..",
	}
	cands, bytes := matchPredecessors(missing, hints)
	want := [][2][]string{
		{{"/nix/store/44444444444444444444444444444444-hello-2.13"}, {"/nix/store/33333333333333333333333333333333-hello-2.12"}},
		{{"/nix/store/66666666666666666666666666666666-libfoo-1.0"}, {"/nix/store/77777777777777777777777777777777-libfoo-1.0-dev"}},
		{nil, nil},
	}
	if bytes != 200 {
		t.Errorf("bytes with predecessors = %d, want 200", bytes)
	}
	for i := range want {
		for k := range 2 {
			if strings.Join(cands[i][k], " ") != strings.Join(want[i][k], " ") {
				t.Errorf("%s list %d = %v, want %v", missing[i].Path.Name(), k, cands[i][k], want[i][k])
			}
		}
	}
}

// buildDeltaFixture builds testdata/delta.nix with the given --argstr
// pairs and returns its closure, references first.
func buildDeltaFixture(t *testing.T, conn *daemon.Conn, args ...string) []*store.PathInfo {
	t.Helper()
	cmd := []string{"--option", "substituters", "", "--no-out-link", "testdata/delta.nix"}
	for i := 0; i+1 < len(args); i += 2 {
		cmd = append(cmd, "--argstr", args[i], args[i+1])
	}
	out, err := exec.Command("nix-build", cmd...).Output()
	if err != nil {
		t.Fatalf("nix-build: %v", err)
	}
	infos, err := Closure(context.Background(), conn, []store.Path{store.MustParsePath(strings.TrimSpace(string(out)))})
	if err != nil {
		t.Fatal(err)
	}
	return infos
}

// TestDeltaRecordsRoundTrip sends a mass rebuild through the sender's
// stream and the receiver's assembly in-process, with the old generation
// as predecessors: every NAR assembled is byte for byte what
// `nix-store --dump` of the new path gives.
func TestDeltaRecordsRoundTrip(t *testing.T) {
	storetest.RequireDaemon(t)
	ctx := context.Background()
	conn, err := daemon.Dial(ctx, storetest.DaemonSocket, daemon.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	v1 := buildDeltaFixture(t, conn, "salt", "roundtrip-1")
	// A mass rebuild with a line added to every path's big file: that
	// file goes as a patch against its predecessor's.
	v2 := buildDeltaFixture(t, conn, "salt", "roundtrip-2", "edit", "an added line")

	rv := &receiver{infos: v2}
	for _, info := range v1 {
		rv.cands = append(rv.cands, [2][]store.Path{{info.Path}, nil})
	}
	if err := rv.choose(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if len(rv.hashes) != len(v1) {
		t.Fatalf("hash map %v, want %d entries", rv.hashes, len(v1))
	}
	rv.cache = openDigestCache(t.TempDir())
	if err := rv.index(ctx); err != nil {
		t.Fatal(err)
	}
	have := map[digest]uint64{}
	for i, f := range rv.files {
		if _, dup := have[f.digest]; !dup {
			have[f.digest] = uint64(i)
		}
	}
	var stream bytes.Buffer
	st := &DeltaStats{}
	sendCache := openDigestCache(t.TempDir())
	sent := hashPaths(ctx, v2, sendCache)
	preds := make([]string, len(rv.preds))
	for i, p := range rv.preds {
		preds[i] = p.String()
	}
	ri := newRemoteIndex(v2, preds, have)
	if err := writeDelta(ctx, &stream, sent, ri, HostOptions{}, newTracker(v2, nil, nil), st); err != nil {
		t.Fatal(err)
	}
	if st.PatchedFiles != len(v2) || st.PatchBytes > st.PatchedBytes/100 {
		t.Errorf("%d files of %d bytes patched with %d bytes; want one per path, under 1 %%", st.PatchedFiles, st.PatchedBytes, st.PatchBytes)
	}
	// The sender's cache gives what hashing gave.
	for i, sp := range hashPaths(ctx, v2, sendCache) {
		<-sp.ready
		if sp.err != nil || len(sp.entries) != len(sent[i].entries) {
			t.Fatalf("%s: hashed again from the cache: %v, %d entries, want %d", sp.info.Path, sp.err, len(sp.entries), len(sent[i].entries))
		}
		for j, e := range sp.entries {
			if w := sent[i].entries[j]; e.digest != w.digest || !slices.Equal(e.found, w.found) {
				t.Errorf("%s: cached %x %v, hashed %x %v", e.osPath, e.digest[:4], e.found, w.digest[:4], w.found)
			}
		}
	}
	if st.LiteralBytes > st.NarBytes/100 {
		t.Errorf("%d of %d bytes sent as they are", st.LiteralBytes, st.NarBytes)
	}
	zr, err := compress.NewReader(&stream, "zstd")
	if err != nil {
		t.Fatal(err)
	}
	rv.r = wire.NewReader(zr)
	for i, info := range v2 {
		if tag, _ := rv.r.ReadUint64(); tag != tagPath {
			t.Fatalf("record %d, want a path", tag)
		}
		if idx, _ := rv.r.ReadUint64(); idx != uint64(i) {
			t.Fatalf("path %d, want %d", idx, i)
		}
		var got, want bytes.Buffer
		files, err := rv.writeNar(&got, info)
		if err != nil {
			t.Fatal(err)
		}
		// What the assembly tells the cache is what reading the new path
		// gives: it is the next update's index.
		for _, c := range files {
			f := &predFile{pred: &predIndex{info: info, refs: hashSet(info)}, path: info.Path.String() + "/" + c.rel, size: c.size}
			if err := f.read(); err != nil {
				t.Fatal(err)
			}
			if f.raw != c.digest || !slices.Equal(f.found, c.found) {
				t.Errorf("%s/%s: assembly cached digest %x found %v; the file has %x, %v", info.Path, c.rel, c.digest[:4], c.found, f.raw[:4], f.found)
			}
		}
		if err := nar.DumpPath(&want, info.Path.String()); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("%s: assembled NAR of %d bytes differs from its dump (%d bytes)", info.Path, got.Len(), want.Len())
		}
	}
	if tag, _ := rv.r.ReadUint64(); tag != tagDone {
		t.Errorf("last record %d, want done", tag)
	}
	// Indexed again with the cache the first index filled: the same digests.
	again := &receiver{infos: v2, cands: rv.cands, cache: rv.cache}
	if err := again.choose(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if err := again.index(ctx); err != nil {
		t.Fatal(err)
	}
	if len(again.files) != len(rv.files) {
		t.Fatalf("second index: %d files, first %d", len(again.files), len(rv.files))
	}
	for i, f := range again.files {
		if f.path != rv.files[i].path || f.digest != rv.files[i].digest {
			t.Errorf("second index: %s %x, first %s %x", f.path, f.digest[:4], rv.files[i].path, rv.files[i].digest[:4])
		}
	}
	if rv.reused != st.ReusedBytes {
		t.Errorf("receiver reused %d bytes, sender counted %d", rv.reused, st.ReusedBytes)
	}
}

// request is a sender's step 2 and 4 for one path whose NAR is a single
// file of the given contents, claimed to hash to narHash.
func request(t testing.TB, info *store.PathInfo, contents string) []byte {
	b := wire.AppendUint64(nil, 1)
	b = appendDeltaInfo(b, info)
	b = wire.AppendStrings(b, nil)
	b = wire.AppendStrings(b, nil)
	var recs []byte
	recs = wire.AppendUint64(wire.AppendUint64(recs, tagPath), 0)
	recs = wire.AppendString(wire.AppendUint64(recs, tagFile), "")
	recs = wire.AppendBool(recs, false)
	recs = wire.AppendString(recs, contents) // size, contents, padding
	recs = wire.AppendUint64(recs, tagEnd)
	recs = wire.AppendUint64(recs, tagDone)
	var z bytes.Buffer
	zw, err := compress.NewWriter(&z, "zstd", compress.Options{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(recs)
	zw.Close()
	return append(b, z.Bytes()...)
}

// TestReceiveForgedHash: whatever the sender claims, the receiving daemon
// checks the NAR hash, and a path whose assembled NAR does not match never
// becomes valid; Receive says why.
func TestReceiveForgedHash(t *testing.T) {
	storetest.RequireDaemon(t)
	storetest.RequireTrusted(t)
	ctx := context.Background()
	var h [20]byte
	rand.Read(h[:])
	p := store.MustParsePath("/nix/store/" + store.EncodeNix32(h[:]) + "-deltatest-forged")
	const contents = "not what the hash says\n"
	var good bytes.Buffer
	nw := nar.NewWriter(&good)
	nw.WriteHeader(&nar.Header{Type: nar.TypeRegular, Size: int64(len(contents))})
	io.WriteString(nw, contents)
	nw.Close()
	info := &store.PathInfo{Path: p, NarSize: uint64(good.Len())} // NarHash: zero, wrong
	var out bytes.Buffer
	err := Receive(ctx, bytes.NewReader(request(t, info, contents)), &out, ReceiveOptions{
		Store: func(ctx context.Context) (*daemon.Conn, error) {
			return daemon.Dial(ctx, storetest.DaemonSocket, daemon.Options{})
		},
	})
	var de *daemon.Error
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "hash mismatch") {
		t.Fatalf("Receive = %v, want the daemon's hash mismatch", err)
	}
	if out, err := exec.Command("nix-store", "--check-validity", p.String()).CombinedOutput(); err == nil {
		t.Errorf("%s is valid after a forged NAR hash (%s)", p, out)
	}
	// The sender hears of it: the last answer is the failure.
	if !bytes.Contains(out.Bytes(), []byte("hash mismatch")) {
		t.Errorf("Receive told the sender %q", out.Bytes())
	}
}

// TestPatchSizes: a line inserted into the middle of random data (a
// rebuilt binary's worst case for compression) or of repetitive text goes
// as a patch of well under 1 % up to the sizes patches are made for, and
// decodes to the new contents.
func TestPatchSizes(t *testing.T) {
	var text []byte
	for i := 0; len(text) < 6<<20; i++ {
		text = fmt.Appendf(text, "/nix/store/0c8yiw7yrnpg5lq4bvzqvikxws5y4c4p-deltatest-a/lib deltatest-a %d\n", i)
	}
	for _, n := range []int{64 << 10, 3 << 20, 6 << 20, 20 << 20, -(6 << 20)} {
		var old []byte
		if n > 0 {
			old = make([]byte, n)
			rand.Read(old)
		} else {
			old, n = text, len(text)
		}
		content := slices.Concat(old[:n/2], []byte("an inserted line\n"), old[n/2:])
		frame, err := makePatch(old, content)
		if err != nil {
			t.Fatal(err)
		}
		if len(frame) > n/100 {
			t.Errorf("%d bytes: patch of %d bytes", n, len(frame))
		}
		got, err := unpatch(frame, old, int64(len(content)))
		if err != nil || !bytes.Equal(got, content) {
			t.Errorf("%d bytes: unpatch: %v", n, err)
		}
	}
}

func FuzzReceivePaths(f *testing.F) {
	info := &store.PathInfo{Path: store.MustParsePath("/nix/store/00000000000000000000000000000000-x"), NarSize: 120,
		References: []store.Path{store.MustParsePath("/nix/store/11111111111111111111111111111111-y")}, Sigs: []string{"k:s"}}
	f.Add(request(f, info, "hello"))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		rv := &receiver{r: wire.NewReader(bytes.NewReader(data))}
		rv.r.MaxString = 1 << 20
		if err := rv.readPaths(); err == nil && len(rv.infos) != len(rv.cands) {
			t.Fatalf("%d infos, %d candidate lists", len(rv.infos), len(rv.cands))
		}
	})
}

func FuzzReceiveRecords(f *testing.F) {
	info := &store.PathInfo{Path: store.MustParsePath("/nix/store/00000000000000000000000000000000-x")}
	var recs []byte
	recs = wire.AppendString(wire.AppendUint64(recs, tagDir), "")
	recs = wire.AppendString(wire.AppendUint64(recs, tagLink), "a")
	recs = wire.AppendString(recs, "/nix/store/x")
	recs = wire.AppendString(wire.AppendUint64(recs, tagFile), "b")
	recs = wire.AppendBool(recs, true)
	recs = wire.AppendString(recs, "#!/bin/sh\n")
	recs = wire.AppendString(wire.AppendUint64(recs, tagRef), "c")
	recs = wire.AppendBool(recs, false)
	recs = wire.AppendUint64(recs, 100)
	recs = wire.AppendUint64(recs, 0)
	f.Add(append(bytes.Clone(recs), wire.AppendUint64(nil, tagEnd)...))
	patch := wire.AppendString(wire.AppendUint64(nil, tagDir), "")
	patch = wire.AppendString(wire.AppendUint64(patch, tagPatch), "p")
	patch = wire.AppendBool(patch, false)
	patch = wire.AppendUint64(patch, 5000)
	patch = wire.AppendUint64(patch, 0)
	patch = wire.AppendBytes(patch, []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0x58, 0, 0})
	f.Add(patch)
	f.Add(recs[:40])
	f.Add(wire.AppendUint64(nil, 99))
	f.Add(append(wire.AppendString(wire.AppendUint64(nil, tagFile), ""), 0, 0, 0, 0, 0, 0, 0, 0x80))
	f.Fuzz(func(t *testing.T, data []byte) {
		rv := &receiver{r: wire.NewReader(bytes.NewReader(data))}
		rv.r.MaxString = 1 << 20
		var out bytes.Buffer
		if _, err := rv.writeNar(&out, info); err == nil {
			// Whatever the records, what is written is a NAR.
			if _, err := nar.Copy(io.Discard, &out); err != nil {
				t.Fatalf("assembled an invalid NAR: %v", err)
			}
		}
	})
}

func FuzzPredsReply(f *testing.F) {
	b := wire.AppendUint64(wire.AppendUint64(nil, ackPreds), 2)
	b = wire.AppendString(wire.AppendString(b, "/nix/store/00000000000000000000000000000000-x"), "")
	f.Add(wire.AppendBytes(bytes.Clone(b), make([]byte, 64)), 2)
	f.Add(wire.AppendBytes(bytes.Clone(b), bytes.Repeat([]byte{7}, 64)), 2)
	f.Add(wire.AppendBytes(bytes.Clone(b), make([]byte, 63)), 2)
	f.Add(wire.AppendString(wire.AppendUint64(nil, ackFail), "no space left"), 1)
	f.Add([]byte{4, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255}, 3)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		n = max(min(n, 1000), 0)
		preds, have, err := readPredsReply(wire.NewReader(bytes.NewReader(data)), n)
		if err == nil && (len(preds) != n || have == nil || len(have) > len(data)/32) {
			t.Fatalf("%d predecessors of %d paths, digests %v", len(preds), n, have)
		}
	})
}
