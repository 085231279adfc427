package copy_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/copy"
	"github.com/nbuild/nbuild/store/ssh"
	"github.com/nbuild/nbuild/store/storetest"
	"github.com/nbuild/nbuild/store/testhost"
)

// buildDelta builds testdata/delta.nix with the given --argstr pairs and
// returns its closure, references first.
func buildDelta(t *testing.T, args ...string) []*store.PathInfo {
	t.Helper()
	_, infos := nixBuild(t, "testdata/delta.nix", args...)
	return infos
}

// deltaOptions copy to h with deltas tried whatever the size.
func deltaOptions(h *testhost.Host) copy.HostOptions {
	return copy.HostOptions{SSH: ssh.Options{Getenv: h.Getenv}, Delta: copy.DeltaOptions{MinBytes: 1}}
}

func toHost(t *testing.T, h *testhost.Host, infos []*store.PathInfo, opts copy.HostOptions) *copy.HostResult {
	t.Helper()
	res, err := copy.ToHost(context.Background(), h.Addr, infos, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// newPaths are those of infos that old does not hold.
func newPaths(infos, old []*store.PathInfo) []*store.PathInfo {
	var out []*store.PathInfo
	for _, info := range infos {
		if !slices.ContainsFunc(old, func(o *store.PathInfo) bool { return o.Path == info.Path }) {
			out = append(out, info)
		}
	}
	return out
}

// TestDeltaMassRebuild copies a generation, then a mass rebuild of it
// (every path new, files equal but for the store paths they name): the
// second copy sends this test binary to the host, which assembles every
// path from its predecessor, and Nix on the host checks each NAR.
func TestDeltaMassRebuild(t *testing.T) {
	v1 := buildDelta(t, "salt", "mass-1")
	v2 := buildDelta(t, "salt", "mass-2")
	v3 := buildDelta(t, "salt", "mass-3")
	h := testhost.New(t, testhost.Options{})
	opts := deltaOptions(h)

	res := toHost(t, h, v1, opts)
	if res.Delta == nil || res.Delta.Used || !strings.Contains(res.Delta.Why, "no likely predecessors") {
		t.Errorf("first copy: delta %+v, want none for lack of predecessors", res.Delta)
	}
	checkSame(t, h, v1)

	for i, gen := range [][]*store.PathInfo{v2, v3} {
		res = toHost(t, h, gen, opts)
		d := res.Delta
		if d == nil || !d.Used {
			t.Fatalf("generation %d: delta %+v, want used", i+2, d)
		}
		if want := []string{"sent", "cached"}[i]; d.Binary != want {
			t.Errorf("generation %d: binary %q, want %q", i+2, d.Binary, want)
		}
		if len(res.Sent) != len(gen) || d.Predecessors != len(gen) {
			t.Errorf("generation %d: sent %d paths, %d with predecessors; want %d", i+2, len(res.Sent), d.Predecessors, len(gen))
		}
		// Every file of 64 bytes or more is made on the host; what
		// crosses the link is the structure and the small files.
		if d.ReusedBytes < d.NarBytes*95/100 || d.WireBytes > 64<<10 {
			t.Errorf("generation %d: %d of %d NAR bytes reused, %d literal, %d on the wire",
				i+2, d.ReusedBytes, d.NarBytes, d.LiteralBytes, d.WireBytes)
		}
		t.Logf("generation %d: %+v", i+2, *d)
		checkSame(t, h, gen)
	}
}

// TestDeltaSmallUpdate sends one changed path (a changed file in the
// root), a renamed one (a version bump, matched by name without
// version), and edited ones (a line added to a big file: a patch).
func TestDeltaSmallUpdate(t *testing.T) {
	v1 := buildDelta(t, "salt", "small")
	tweak := buildDelta(t, "salt", "small", "tweak", "changed")
	bump := buildDelta(t, "salt", "small", "cversion", "1.1")
	edit := buildDelta(t, "salt", "small", "edit", "a line rewriting cannot make")
	h := testhost.New(t, testhost.Options{})
	opts := deltaOptions(h)
	toHost(t, h, v1, opts)
	for _, c := range []struct {
		name string
		gen  []*store.PathInfo
		want int
	}{{"tweak", tweak, 1}, {"bump", bump, 2}, {"edit", edit, 4}} {
		res := toHost(t, h, c.gen, opts)
		d := res.Delta
		if d == nil || !d.Used || len(res.Sent) != c.want || d.Predecessors != c.want {
			t.Fatalf("%s: sent %d, delta %+v; want %d paths sent with predecessors", c.name, len(res.Sent), d, c.want)
		}
		if d.LiteralBytes == 0 && c.name == "tweak" {
			t.Errorf("%s: the changed file was not sent", c.name)
		}
		// An edited big file goes as a patch against its predecessor's.
		if c.name == "edit" && (d.PatchedFiles != 4 || d.PatchBytes > d.PatchedBytes/100) {
			t.Errorf("%s: %d files of %d bytes patched with %d bytes, want 4 in under 1 %%", c.name, d.PatchedFiles, d.PatchedBytes, d.PatchBytes)
		}
		if d.ReusedBytes+d.PatchedBytes < d.NarBytes/2 {
			t.Errorf("%s: %d of %d bytes reused, %d patched", c.name, d.ReusedBytes, d.NarBytes, d.PatchedBytes)
		}
		checkSame(t, h, c.gen)
	}
}

// TestDeltaBadRemoteBinary: a cached binary that is not the one this
// program would send is never run (it is replaced), and a remote nbuild
// that cannot run there (another architecture) makes the copy go the
// plain way.
func TestDeltaBadRemoteBinary(t *testing.T) {
	storetest.RequireTools(t, "go")
	v1 := buildDelta(t, "salt", "bad-1")
	v2 := buildDelta(t, "salt", "bad-2")
	v3 := buildDelta(t, "salt", "bad-3")
	h := testhost.New(t, testhost.Options{})
	opts := deltaOptions(h)
	toHost(t, h, v1, opts)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	sum := fmt.Sprintf("%x", sha256.Sum256(data))
	marker := filepath.Join(t.TempDir(), "ran")
	h.MustRun("test", "-d", filepath.Dir(marker)) // the host would see the marker
	h.MustRun("sh", "-c", `d=$HOME/.cache/nbuild/bin/`+sum+` && mkdir -p $d && printf '#!/bin/sh\ntouch `+marker+`\n' >$d/nbuild && chmod +x $d/nbuild`)
	// Binaries of other versions: one unused for 40 days, one recent.
	h.MustRun("sh", "-c", `c=$HOME/.cache/nbuild/bin && mkdir -p $c/old $c/recent && touch -d '40 days ago' $c/old`)
	res := toHost(t, h, v2, opts)
	if d := res.Delta; d == nil || !d.Used || d.Binary != "sent" {
		t.Errorf("corrupt cache: delta %+v, want used with a binary sent", d)
	}
	if got := h.MustRun("sh", "-c", "ls $HOME/.cache/nbuild/bin | sort | tr '\n' ' '"); got != sum+" recent " {
		t.Errorf("binaries kept on the host: %q, want this one and the recent one", got)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the corrupt cached binary ran")
	}
	checkSame(t, h, v2)

	// An arm64 program is not an nbuild this x86_64 host can run.
	if goarch := os.Getenv("GOARCH"); goarch == "arm64" {
		t.Skip("test binary is arm64")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\nfunc main() { println(\"nbuild-copy-receive 1 linux/arm64\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(dir, "nbuild-arm64")
	build := exec.Command("go", "build", "-o", foreign, src)
	build.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	opts.Delta.Remote = foreign
	res = toHost(t, h, v3, opts)
	if d := res.Delta; d == nil || d.Used || !strings.Contains(d.Why, "no usable nbuild at "+foreign) {
		t.Errorf("foreign binary: delta %+v, want unused for lack of a usable nbuild", d)
	}
	if len(res.Sent) != len(v3) {
		t.Errorf("foreign binary: sent %d of %d paths", len(res.Sent), len(v3))
	}
	checkSame(t, h, v3)
}

// TestDeltaInterrupted cuts a delta copy as its second path starts: the
// host holds only complete, valid paths, and the rerun sends exactly the
// rest, again as a delta.
func TestDeltaInterrupted(t *testing.T) {
	v1 := buildDelta(t, "salt", "intr-1")
	v2 := buildDelta(t, "salt", "intr-2")
	h := testhost.New(t, testhost.Options{})
	opts := deltaOptions(h)
	toHost(t, h, v1, opts)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cut := opts
	started := 0
	cut.Sending = func(*store.PathInfo) {
		if started++; started == 2 {
			cancel()
		}
	}
	if _, err := copy.ToHost(ctx, h.Addr, v2, cut); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted copy: %v, want context.Canceled", err)
	}
	valid := remoteValid(t, h, v2)
	var have []*store.PathInfo
	for _, info := range v2 {
		if slices.Contains(valid, info.Path) {
			have = append(have, info)
		}
	}
	checkSame(t, h, have)
	res := toHost(t, h, v2, opts)
	if want := newPaths(v2, have); len(res.Sent) != len(want) || res.Delta == nil || !res.Delta.Used {
		t.Errorf("rerun sent %d paths (delta %+v), want the %d the host lacked", len(res.Sent), res.Delta, len(want))
	}
	checkSame(t, h, v2)
}

// TestDeltaCorruptPredecessor: a predecessor's file changed on the host
// after the host cached its digest (a disk error, a hand edit). The delta
// assembles a NAR whose hash the host's Nix refuses, the copy goes on the
// plain way, and every path ends up valid and intact; the host no longer
// trusts its cache for that predecessor.
func TestDeltaCorruptPredecessor(t *testing.T) {
	v1 := buildDelta(t, "salt", "corrupt-1")
	v2 := buildDelta(t, "salt", "corrupt-2")
	v3 := buildDelta(t, "salt", "corrupt-3")
	h := testhost.New(t, testhost.Options{})
	opts := deltaOptions(h)
	toHost(t, h, v1, opts)
	if res := toHost(t, h, v2, opts); res.Delta == nil || !res.Delta.Used {
		t.Fatalf("v2: delta %+v, want used", res.Delta)
	}
	// share/plain names no store path: its cached digest is used as is.
	plain := v2[0].Path.String() + "/share/plain"
	h.MustRun("sh", "-c", "chmod u+w "+plain+" && printf X | dd of="+plain+" bs=1 seek=100 conv=notrunc status=none")
	res := toHost(t, h, v3, opts)
	if d := res.Delta; d == nil || !d.Used || !strings.Contains(d.Why, "hash mismatch") {
		t.Errorf("delta %+v, want used, then the plain way after the host's Nix refused a NAR", d)
	}
	if len(res.Sent) != len(v3) {
		t.Errorf("sent %d of %d paths", len(res.Sent), len(v3))
	}
	checkSame(t, h, v3)
	if out := h.MustRun("sh", "-c", "ls $HOME/.cache/nbuild/digests"); strings.Contains(out, v2[0].Path.Base()) {
		t.Errorf("the host still caches %s:\n%s", v2[0].Path.Base(), out)
	}
}

// TestDeltaUsers: a delta copy as an ordinary ssh user, whose nix-daemon
// --stdio reaches the host's daemon. In trusted-users, the update is made
// on the host as for root (nbuild in that user's own cache); not trusted,
// the daemon refuses the unsigned paths whichever way they come, and the
// error says why.
func TestDeltaUsers(t *testing.T) {
	v1 := buildDelta(t, "salt", "users-1")
	v2 := buildDelta(t, "salt", "users-2")
	for _, trusted := range []bool{true, false} {
		t.Run(fmt.Sprint("trusted=", trusted), func(t *testing.T) {
			conf := ""
			if trusted {
				conf = "trusted-users = root nbuilddelta\n"
			}
			h := testhost.New(t, testhost.Options{User: "nbuilddelta", NixConf: conf})
			opts := deltaOptions(h)
			// The first generation arrives as root, as an installer would leave it.
			if _, err := copy.ToHost(context.Background(), h.Addr, v1, opts); err != nil {
				t.Fatal(err)
			}
			res, err := copy.ToHost(context.Background(), h.UserAddr, v2, opts)
			if !trusted {
				if !errors.Is(err, copy.ErrNotTrusted) {
					t.Fatalf("untrusted user: %v, want ErrNotTrusted", err)
				}
				if v := remoteValid(t, h, v2); len(v) != 0 {
					t.Errorf("untrusted user: %v valid on the host", v)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := res.Delta; d == nil || !d.Used || d.Binary != "sent" || d.Predecessors != len(v2) || len(res.Sent) != len(v2) {
				t.Errorf("trusted user: sent %d, delta %+v", len(res.Sent), d)
			}
			checkSame(t, h, v2)
		})
	}
}
