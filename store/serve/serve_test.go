package serve_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/serve"
	"github.com/nbuild/nbuild/store/storetest"
	"github.com/nbuild/nbuild/store/testhost"
)

func lines(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") }

func pathStrings(ps []store.Path) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func TestHandshake(t *testing.T) {
	c, _ := chrootServer(t)
	if v := c.ServerVersion(); v != 0x207 {
		t.Errorf("server version %#x, want 0x207 (Nix 2.8)", v)
	}
}

// TestQueryPathInfosDifferential compares one batched QueryPathInfos with
// what real Nix prints for the same paths of this machine's store.
func TestQueryPathInfosDifferential(t *testing.T) {
	c := machineServer(t)
	paths := storetest.LocalContent(t)
	missing := storetest.NewObject(t, "serve-missing", nil).Info.Path
	infos, err := c.QueryPathInfos(ctxT(t), append(slices.Clone(paths), missing))
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != len(paths) {
		t.Fatalf("got %d infos for %d valid paths (+1 invalid)", len(infos), len(paths))
	}
	args := pathStrings(paths)
	hashes := lines(nixStore(t, append([]string{"-q", "--hash"}, args...)...))
	sizes := lines(nixStore(t, append([]string{"-q", "--size"}, args...)...))
	derivers := lines(nixStore(t, append([]string{"-q", "--deriver"}, args...)...))
	var js []struct {
		Path       string   `json:"path"`
		CA         string   `json:"ca"`
		Signatures []string `json:"signatures"`
	}
	// nix path-info takes a .drv to mean its outputs unless --derivation,
	// and an output to mean its deriver with it: ask in two groups.
	var drvArgs, outArgs []string
	for _, a := range args {
		if strings.HasSuffix(a, ".drv") {
			drvArgs = append(drvArgs, a)
		} else {
			outArgs = append(outArgs, a)
		}
	}
	for _, group := range [][]string{append([]string{"--derivation"}, drvArgs...), outArgs} {
		if len(group) == 0 || (len(group) == 1 && group[0] == "--derivation") {
			continue
		}
		cmd := append([]string{"--extra-experimental-features", "nix-command", "path-info", "--offline", "--option", "substituters", "", "--json"}, group...)
		out, err := exec.Command("nix", cmd...).Output()
		if err != nil {
			t.Fatalf("nix path-info: %v", err)
		}
		var part []struct {
			Path       string   `json:"path"`
			CA         string   `json:"ca"`
			Signatures []string `json:"signatures"`
		}
		if err := json.Unmarshal(out, &part); err != nil {
			t.Fatal(err)
		}
		js = append(js, part...)
	}
	byPath := map[string]int{}
	for i, j := range js {
		byPath[j.Path] = i
	}
	withRefs, withDeriver := 0, 0
	for i, info := range infos {
		p := paths[i]
		if info.Path != p {
			t.Fatalf("info %d is for %s, want %s (order of the query)", i, info.Path, p)
		}
		if got := info.NarHashString(); got != hashes[i] {
			t.Errorf("%s: hash %s, nix-store -q --hash %s", p, got, hashes[i])
		}
		if got := itoa64(info.NarSize); got != sizes[i] {
			t.Errorf("%s: size %s, nix-store -q --size %s", p, got, sizes[i])
		}
		wantDeriver := derivers[i]
		if wantDeriver == "unknown-deriver" {
			wantDeriver = ""
		}
		gotDeriver := ""
		if !info.Deriver.IsZero() {
			gotDeriver = info.Deriver.String()
			withDeriver++
		}
		if gotDeriver != wantDeriver {
			t.Errorf("%s: deriver %q, nix-store -q --deriver %q", p, gotDeriver, wantDeriver)
		}
		ji, ok := byPath[p.String()]
		if !ok {
			t.Fatalf("%s: nix path-info did not list it", p)
		}
		j := js[ji]
		if info.CA != j.CA {
			t.Errorf("%s: CA %q, nix path-info %q", p, info.CA, j.CA)
		}
		if !slices.Equal(info.Sigs, j.Signatures) && (len(info.Sigs)+len(j.Signatures) > 0) {
			t.Errorf("%s: sigs %q, nix path-info %q", p, info.Sigs, j.Signatures)
		}
		want := strings.Fields(nixStore(t, "-q", "--references", p.String()))
		slices.Sort(want)
		if got := pathStrings(info.References); !slices.Equal(got, want) {
			t.Errorf("%s: references %q, nix-store -q --references %q", p, got, want)
		}
		if len(info.References) > 0 {
			withRefs++
		}
	}
	t.Logf("%d paths compared, %d with references, %d with a deriver", len(infos), withRefs, withDeriver)
	if withRefs == 0 || withDeriver == 0 {
		t.Error("no compared path has references or a deriver: the test proves little")
	}

	info, err := c.QueryPathInfo(ctxT(t), missing)
	if !errors.Is(err, store.ErrNotValid) {
		t.Errorf("QueryPathInfo(missing) = %v, %v; want ErrNotValid", info, err)
	}
}

func itoa64(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestDumpStorePathDifferential: DumpStorePath gives exactly the bytes of
// nix-store --dump, several paths on one connection.
func TestDumpStorePathDifferential(t *testing.T) {
	c := machineServer(t)
	paths := storetest.LocalContent(t)
	for _, p := range paths {
		var got bytes.Buffer
		n, err := c.DumpStorePath(ctxT(t), p, &got)
		if err != nil {
			t.Fatalf("DumpStorePath(%s): %v", p, err)
		}
		want, err := exec.Command("nix-store", "--dump", p.String()).Output()
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(len(want)) || !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s: DumpStorePath gave %d bytes (n=%d), nix-store --dump %d, equal=%v", p, got.Len(), n, len(want), bytes.Equal(got.Bytes(), want))
		}
	}
}

// TestQueryClosureDifferential compares with nix-store -q --requisites.
func TestQueryClosureDifferential(t *testing.T) {
	c := machineServer(t)
	var roots []store.Path // the .drv files: their closure holds the others'
	for _, p := range storetest.LocalContent(t) {
		if p.IsDerivation() {
			roots = append(roots, p)
		}
	}
	got, err := c.QueryClosure(ctxT(t), roots, false)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Fields(nixStore(t, append([]string{"-q", "--requisites"}, pathStrings(roots)...)...))
	slices.Sort(want)
	gs := pathStrings(got)
	slices.Sort(gs)
	if !slices.Equal(gs, want) {
		t.Errorf("QueryClosure = %d paths, nix-store -q --requisites %d", len(gs), len(want))
	}
}

// checkOnHost verifies objs were registered exactly: --verify-path
// (contents match the NAR hash) and -q --hash/--references equal ours.
func checkOnHost(t *testing.T, run func(args ...string) (string, error), objs []*storetest.Object) {
	t.Helper()
	for _, o := range objs {
		p := o.Info.Path.String()
		if out, err := run("nix-store", "--verify-path", p); err != nil {
			t.Fatalf("--verify-path %s: %v %s", p, err, out)
		}
		h, err := run("nix-store", "-q", "--hash", p)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(h) != o.Info.NarHashString() {
			t.Errorf("%s: remote hash %s, want %s", p, h, o.Info.NarHashString())
		}
		refs, err := run("nix-store", "-q", "--references", p)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Fields(refs), pathStrings(o.Info.References); !slices.Equal(got, want) {
			t.Errorf("%s: remote references %q, want %q", p, got, want)
		}
	}
}

func chrootRun(root string) func(args ...string) (string, error) {
	return func(args ...string) (string, error) {
		args = append([]string{args[0], "--store", "local?root=" + root}, args[1:]...)
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		return string(out), err
	}
}

// TestAddToStoreNarsPipelinedLocal adds 50 chained paths in one pipelined
// batch to a chroot store and checks them with real Nix.
func TestAddToStoreNarsPipelinedLocal(t *testing.T) {
	c, root := chrootServer(t)
	objs := chain(t, 50, "serve-pipe")
	var acked []store.Path
	err := c.AddToStoreNars(ctxT(t), sources(objs), serve.AddOptions{Acked: func(pi *store.PathInfo) {
		acked = append(acked, pi.Path)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(acked) != len(objs) || acked[49] != objs[49].Info.Path {
		t.Fatalf("%d acks, want %d in order", len(acked), len(objs))
	}
	checkOnHost(t, chrootRun(root), objs)
	// And back through the protocol.
	paths := make([]store.Path, len(objs))
	for i, o := range objs {
		paths[i] = o.Info.Path
	}
	infos, err := c.QueryPathInfos(ctxT(t), paths)
	if err != nil {
		t.Fatal(err)
	}
	for i, info := range infos {
		storetest.CheckInfo(t, info, objs[i].Info)
	}
}

// TestAddToStoreNarsOverSSH does the same through ssh to a test host with
// a small in-flight window, so the window logic is exercised.
func TestAddToStoreNarsOverSSH(t *testing.T) {
	h := testhost.New(t, testhost.Options{})
	o := sshOpts(h, h.Port)
	o.Client.MaxInFlightBytes = 4 << 10
	c, err := serve.Dial(ctxT(t), h.Addr, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	objs := chain(t, 50, "serve-ssh")
	if err := c.AddToStoreNars(ctxT(t), sources(objs), serve.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	checkOnHost(t, h.Run, objs)
	// The machine's own store did not get them.
	if err := exec.Command("nix-store", "--check-validity", objs[0].Info.Path.String()).Run(); err == nil {
		t.Error("path sent to the test host is valid on the machine")
	}
}

// TestImportPaths sends an export stream.
func TestImportPaths(t *testing.T) {
	c, root := chrootServer(t)
	objs := chain(t, 5, "serve-import")
	if err := c.ImportPaths(ctxT(t), sources(objs)); err != nil {
		t.Fatal(err)
	}
	checkOnHost(t, chrootRun(root), objs)
}

// TestExportWriterMatchesNix: our export stream of a path equals
// `nix-store --export` of it.
func TestExportWriterMatchesNix(t *testing.T) {
	c, root := chrootServer(t)
	objs := chain(t, 2, "serve-export")
	if err := c.AddToStoreNars(ctxT(t), sources(objs), serve.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	want, err := exec.Command("nix-store", "--store", "local?root="+root, "--export", objs[0].Info.Path.String(), objs[1].Info.Path.String()).Output()
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	ew := serve.NewExportWriter(&got)
	for _, s := range sources(objs) {
		if err := ew.WritePath(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := ew.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("export stream differs from nix-store --export (%d vs %d bytes)", got.Len(), len(want))
	}
}

func TestConformanceLocal(t *testing.T) {
	storetest.RequireNix(t)
	storetest.RequireRoot(t)
	root := t.TempDir()
	storetest.Run(t, func(t *testing.T) storetest.Store {
		s := serve.NewStore(func(ctx context.Context) (*serve.Client, error) {
			p := startProc(t, "nix-store", "--serve", "--write", "--store", "local?root="+root)
			return serve.NewClient(ctx, p, serve.Options{})
		})
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestConformanceSSH(t *testing.T) {
	h := testhost.New(t, testhost.Options{})
	storetest.Run(t, func(t *testing.T) storetest.Store {
		s := serve.NewStore(func(ctx context.Context) (*serve.Client, error) {
			return serve.Dial(ctx, h.Addr, sshOpts(h, h.Port))
		})
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// Failure cases: each must end in a clear error, never a hang.

func TestGarbageHandshake(t *testing.T) {
	storetest.RequireRoot(t)
	p := startProc(t, "sh", "-c", "echo 'Welcome to the build box!'; echo motd; cat >/dev/null")
	_, err := serve.NewClient(ctxT(t), p, serve.Options{})
	if !errors.Is(err, serve.ErrProtocolMismatch) {
		t.Fatalf("NewClient = %v, want ErrProtocolMismatch", err)
	}
	if !strings.Contains(err.Error(), "got 'Welcome to the build box!'") {
		t.Errorf("error %q does not show what the peer sent", err)
	}
}

func TestServerQuitsAtOnce(t *testing.T) {
	p := startProc(t, "sh", "-c", "echo 'nix-store: command not found' >&2; exit 127")
	_, err := serve.NewClient(ctxT(t), p, serve.Options{})
	if !errors.Is(err, serve.ErrCannotConnect) || !strings.Contains(err.Error(), "nix-store: command not found") {
		t.Fatalf("NewClient = %v, want the remote's stderr in the error", err)
	}
}

func TestSSHClosedPort(t *testing.T) {
	h := testhost.New(t, testhost.Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	_, err = serve.Dial(ctxT(t), h.Addr, sshOpts(h, port))
	if !errors.Is(err, serve.ErrCannotConnect) || !strings.Contains(err.Error(), "Connection refused") {
		t.Fatalf("Dial to a closed port = %v", err)
	}
	t.Log(err)
}

// TestInvalidPathBreaksOnlyTheConnection: the server quits on an invalid
// path; the client reports the server's reason, the Store dials again.
func TestInvalidPathBreaksOnlyTheConnection(t *testing.T) {
	c, _ := chrootServer(t)
	missing := storetest.NewObject(t, "serve-missing", nil).Info.Path
	err := c.NarFromPath(ctxT(t), missing, io.Discard)
	if !errors.Is(err, store.ErrNotValid) {
		t.Fatalf("NarFromPath(missing) = %v, want ErrNotValid", err)
	}
	if !strings.Contains(err.Error(), "is not valid") {
		t.Errorf("error %q lacks the server's message", err)
	}
	if _, err := c.QueryValidPaths(ctxT(t), nil, false); !errors.Is(err, serve.ErrBroken) {
		t.Errorf("client after server quit: %v, want ErrBroken", err)
	}
}

func TestReadOnlyServerRefusesUpload(t *testing.T) {
	storetest.RequireNix(t)
	storetest.RequireRoot(t)
	root := t.TempDir()
	c := newClient(t, startProc(t, "nix-store", "--serve", "--store", "local?root="+root))
	o := storetest.NewObject(t, "serve-ro", nil)
	err := c.AddToStoreNar(ctxT(t), o.Info, bytes.NewReader(o.NAR))
	if err == nil {
		t.Fatal("read-only server accepted an upload")
	}
	t.Log(err)
	var oe *serve.OpError
	if !errors.As(err, &oe) || !strings.Contains(err.Error(), "importing paths is not allowed") {
		t.Errorf("upload to a read-only server: %v; want an OpError with the server's refusal", err)
	}
	if _, err := chrootRun(root)("nix-store", "--check-validity", o.Info.Path.String()); err == nil {
		t.Errorf("%s is valid after a refused upload", o.Info.Path)
	}
}

// TestServerKilledMidUpload kills the remote nix-store while a pipelined
// upload runs: the upload fails (no hang), paths acknowledged before are
// valid, the rest are not. The kill happens inside the second
// acknowledgement, and the window holds two paths, so at most four are
// acknowledged whatever the machine's speed.
func TestServerKilledMidUpload(t *testing.T) {
	h := testhost.New(t, testhost.Options{})
	o := sshOpts(h, h.Port)
	o.Client.MaxInFlightBytes = 2 * (256<<10 + 1<<10)
	c, err := serve.Dial(ctxT(t), h.Addr, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var objs []*storetest.Object
	for i := range 20 {
		big := bytes.Repeat([]byte{byte(i)}, 256<<10)
		nb := storetest.DirNAR([]storetest.NAREntry{{Name: "blob", Contents: big}, {Name: "id", Contents: []byte(strconv.Itoa(i) + t.Name())}})
		info, err := storetest.CAInfo("serve-kill-"+strconv.Itoa(i), nb, nil)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, &storetest.Object{Info: info, NAR: nb})
	}
	var acked []store.Path
	err = c.AddToStoreNars(ctxT(t), sources(objs), serve.AddOptions{Acked: func(pi *store.PathInfo) {
		acked = append(acked, pi.Path)
		if len(acked) == 2 {
			h.KillSessions()
		}
	}})
	if len(acked) < 2 {
		t.Fatalf("upload ended before the kill: %v", err)
	}
	if err == nil {
		t.Fatal("upload succeeded although the server was killed")
	}
	t.Logf("error after kill: %v (acked %d)", err, len(acked))
	if len(acked) > 4 {
		t.Fatalf("%d paths acknowledged; the window allows 2 after the kill", len(acked))
	}
	// Acknowledged paths are valid; the valid ones form a prefix (a path
	// may have been registered with its acknowledgement lost in the kill).
	validPrefix := true
	for i, o := range objs {
		_, err := h.Run("nix-store", "--check-validity", o.Info.Path.String())
		valid := err == nil
		if i < len(acked) && !valid {
			t.Errorf("path %d acknowledged but not valid", i)
		}
		if valid && !validPrefix {
			t.Errorf("path %d valid after an invalid one", i)
		}
		validPrefix = validPrefix && valid
	}
	if out, err := h.Run("nix-store", "--verify"); err != nil {
		t.Errorf("host store inconsistent after the kill: %v %s", err, out)
	}
}

// TestDumpStorePathsPipelined: pipelined NARs equal nix-store --dump, in
// order, on one connection that stays usable.
func TestDumpStorePathsPipelined(t *testing.T) {
	c := machineServer(t)
	paths := storetest.LocalContent(t)
	bufs := map[store.Path]*bytes.Buffer{}
	var order []store.Path
	err := c.DumpStorePaths(ctxT(t), paths, func(p store.Path) (io.Writer, error) {
		order = append(order, p)
		bufs[p] = new(bytes.Buffer)
		return bufs[p], nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(order, paths) {
		t.Fatalf("NARs delivered out of order")
	}
	for _, p := range paths {
		want, err := exec.Command("nix-store", "--dump", p.String()).Output()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(bufs[p].Bytes(), want) {
			t.Errorf("%s: %d bytes, nix-store --dump %d", p, bufs[p].Len(), len(want))
		}
	}
	if _, err := c.QueryValidPaths(ctxT(t), paths[:1], false); err != nil {
		t.Errorf("connection unusable after DumpStorePaths: %v", err)
	}
}

// TestDumpStorePathsInvalidInMiddle: the paths before the invalid one are
// delivered whole; the error names the server's reason.
func TestDumpStorePathsInvalidInMiddle(t *testing.T) {
	c, _ := chrootServer(t)
	objs := chain(t, 2, "serve-dump")
	if err := c.AddToStoreNars(ctxT(t), sources(objs), serve.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	missing := storetest.NewObject(t, "serve-missing", nil).Info.Path
	var got []*bytes.Buffer
	err := c.DumpStorePaths(ctxT(t), []store.Path{objs[0].Info.Path, missing, objs[1].Info.Path}, func(store.Path) (io.Writer, error) {
		got = append(got, new(bytes.Buffer))
		return got[len(got)-1], nil
	})
	if err == nil || !strings.Contains(err.Error(), "is not valid") {
		t.Fatalf("err = %v, want the server's 'is not valid'", err)
	}
	if len(got) < 1 || !bytes.Equal(got[0].Bytes(), objs[0].NAR) {
		t.Errorf("first NAR not delivered whole before the failure")
	}
}

// TestUploadSourceFails: a local failure while sending is reported as a
// *serve.SourceError; paths before it are registered, the failed one is
// not, and a Store dials a fresh connection afterwards.
func TestUploadSourceFails(t *testing.T) {
	storetest.RequireNix(t)
	storetest.RequireRoot(t)
	root := t.TempDir()
	dial := func(ctx context.Context) (*serve.Client, error) {
		p := startProc(t, "nix-store", "--serve", "--write", "--store", "local?root="+root)
		return serve.NewClient(ctx, p, serve.Options{})
	}
	s := serve.NewStore(dial)
	defer s.Close()
	objs := chain(t, 3, "serve-srcfail")
	tests := []struct {
		name  string
		write func(w io.Writer, nar []byte) error
	}{
		{"reader error", func(w io.Writer, nar []byte) error {
			w.Write(nar[:len(nar)/2])
			return errors.New("disk on fire")
		}},
		{"short NAR", func(w io.Writer, nar []byte) error {
			_, err := w.Write(nar[:len(nar)-8])
			return err
		}},
		{"long NAR", func(w io.Writer, nar []byte) error {
			_, err := w.Write(append(slices.Clone(nar), make([]byte, 8)...))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srcs := sources(objs)
			bad := objs[1]
			srcs[1].WriteNAR = func(w io.Writer) error { return tt.write(w, bad.NAR) }
			err := s.Client(ctxT(t), func(c *serve.Client) error {
				return c.AddToStoreNars(ctxT(t), srcs, serve.AddOptions{})
			})
			var se *serve.SourceError
			if !errors.As(err, &se) || se.Path != bad.Info.Path {
				t.Fatalf("err = %v, want a SourceError for %s", err, bad.Info.Path)
			}
			valid, err := s.QueryValidPaths(ctxT(t), []store.Path{objs[0].Info.Path, bad.Info.Path, objs[2].Info.Path}, false)
			if err != nil {
				t.Fatalf("Store did not recover: %v", err)
			}
			if !slices.Equal(valid, []store.Path{objs[0].Info.Path}) {
				t.Errorf("valid after failure: %v, want only the first", valid)
			}
		})
	}
}

// TestCancelMidUpload: cancelling the context interrupts a transfer
// blocked on a slow link.
func TestCancelMidUpload(t *testing.T) {
	h := testhost.New(t, testhost.Options{})
	r := testhost.NewRelay(t, h.HostAddr(), testhost.RelayOptions{RateBytesPerSec: 256 << 10})
	c := sshServer(t, h, r.Port)
	big := storetest.DirNAR([]storetest.NAREntry{{Name: "blob", Contents: bytes.Repeat([]byte("z"), 4<<20)}})
	info, err := storetest.CAInfo("serve-cancel", big, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.MustRun("true") // the host is up
	ctx, cancel := context.WithCancel(ctxT(t))
	first := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- c.AddToStoreNar(ctx, info, &slowReader{r: bytes.NewReader(big), started: first})
	}()
	<-first
	cancel()
	err = <-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, err := h.Run("nix-store", "--check-validity", info.Path.String()); err == nil {
		t.Error("cancelled upload left a valid path")
	}
}

// slowReader signals when it is first read.
type slowReader struct {
	r       io.Reader
	started chan struct{}
	once    bool
}

func (s *slowReader) Read(p []byte) (int, error) {
	if !s.once {
		s.once = true
		close(s.started)
	}
	return s.r.Read(p)
}
