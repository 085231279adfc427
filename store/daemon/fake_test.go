package daemon

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/storetest"
)

// fakeDaemon is a scripted peer for failure paths: it greets like a daemon
// of the given version (computing min() like newer Nix) and then runs
// serve, if set.
type fakeDaemon struct {
	version  uint64 // 0 = 1.34
	nixVer   string
	trust    uint64
	features []string
	greet    func(p *peerConn) error // replaces the whole greeting
	serve    func(p *peerConn) error
}

// peerConn is the daemon side of a connection.
type peerConn struct {
	conn    net.Conn
	r       *wire.Reader
	b       []byte
	version uint64 // negotiated
}

func (p *peerConn) u64(v uint64) *peerConn    { p.b = wire.AppendUint64(p.b, v); return p }
func (p *peerConn) str(s string) *peerConn    { p.b = wire.AppendString(p.b, s); return p }
func (p *peerConn) strs(s []string) *peerConn { p.b = wire.AppendStrings(p.b, s); return p }
func (p *peerConn) raw(b []byte) *peerConn    { p.b = append(p.b, b...); return p }
func (p *peerConn) last() *peerConn           { return p.u64(stderrLast) }

func (p *peerConn) errFrame(msg string, traces ...string) *peerConn {
	p.u64(stderrError).str("Error").u64(0).str("Error").str(msg).u64(0).u64(uint64(len(traces)))
	for _, tr := range traces {
		p.u64(0).str(tr)
	}
	return p
}

func (p *peerConn) flush() error {
	_, err := p.conn.Write(p.b)
	p.b = p.b[:0]
	return err
}

func (p *peerConn) readU64() uint64 {
	v, _ := p.r.ReadUint64()
	return v
}

func (p *peerConn) readStr() string {
	s, _ := p.r.ReadString()
	return s
}

// readOp reads an op code and a string argument.
func (p *peerConn) readOp() (Op, string) {
	op := Op(p.readU64())
	return op, p.readStr()
}

func (f *fakeDaemon) run(p *peerConn) error {
	if f.greet != nil {
		if err := f.greet(p); err != nil {
			return err
		}
	} else {
		if p.readU64() != workerMagic1 {
			return errors.New("fake: bad magic")
		}
		v := f.version
		if v == 0 {
			v = DefaultVersion
		}
		if err := p.u64(workerMagic2).u64(v).flush(); err != nil {
			return err
		}
		cv := p.readU64()
		p.version = min(v, cv)
		if p.version >= 1<<8|38 {
			p.r.ReadStrings()
			if err := p.strs(f.features).flush(); err != nil {
				return err
			}
		}
		p.readU64() // cpu affinity
		p.readU64() // reserveSpace
		nv := f.nixVer
		if nv == "" {
			nv = "2.8.0"
		}
		p.str(nv)
		if p.version >= 1<<8|35 {
			p.u64(f.trust)
		}
		if err := p.last().flush(); err != nil {
			return err
		}
	}
	if f.serve != nil {
		return f.serve(p)
	}
	// Wait for the client to hang up.
	io.Copy(io.Discard, p.conn)
	return nil
}

// socketPair returns the two ends of a unix stream socket pair: unlike
// net.Pipe they have kernel buffers, as real transports do, so a peer may
// write its greeting while the client is still writing its own.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

// dialFake connects a client to f over a socket pair. The peer goroutine is
// stopped and waited for when the test ends.
func dialFake(t *testing.T, f *fakeDaemon, opts Options) (*Conn, error) {
	t.Helper()
	cs, ps := socketPair(t)
	done := make(chan error, 1)
	go func() {
		done <- f.run(&peerConn{conn: ps, r: wire.NewReader(ps)})
	}()
	t.Cleanup(func() {
		cs.Close()
		ps.Close()
		<-done
	})
	opts.SkipSetOptions = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return NewConn(ctx, cs, opts)
}

var testPath = store.MustParsePath("/nix/store/7xb3pd8wiv2nh8gdfvs4y3z9kcn0b6p4-hello-2.12")

// TestProtocolErrors: a misbehaving daemon yields an error naming the op,
// the connection is marked broken, and nothing hangs or panics.
func TestProtocolErrors(t *testing.T) {
	tests := []struct {
		name  string
		reply func(p *peerConn)
		want  error
	}{
		{"PeerClosesMidReply", func(p *peerConn) {
			p.last().u64(1).str("").u64(64).raw([]byte("0123456789"))
		}, io.ErrUnexpectedEOF},
		{"PeerClosesBeforeReply", func(p *peerConn) {}, io.ErrUnexpectedEOF},
		{"GarbageBytes", func(p *peerConn) {
			p.raw([]byte("\xde\xad\xbe\xefgarbage bytes from a confused peer"))
		}, ErrProtocol},
		{"OverlongLogLine", func(p *peerConn) {
			p.u64(stderrNext).u64(1 << 40)
		}, wire.ErrTooLong},
		{"OverlongDeriver", func(p *peerConn) {
			p.last().u64(1).u64(1 << 62)
		}, wire.ErrTooLong},
		{"HugeReferenceList", func(p *peerConn) {
			p.last().u64(1).str("").str(strings.Repeat("0", 64)).u64(1 << 40)
		}, wire.ErrTooLong},
		{"UnknownLogTag", func(p *peerConn) {
			p.u64(0x4e4f5045)
		}, ErrProtocol},
		{"UnexpectedStderrRead", func(p *peerConn) {
			p.u64(stderrRead).u64(4096)
		}, ErrProtocol},
		{"NonZeroPadding", func(p *peerConn) {
			p.u64(stderrNext).u64(3).raw([]byte("abc\x00\x00\x00\x00\x01"))
		}, wire.ErrNonZeroPadding},
		{"TooManyActivityFields", func(p *peerConn) {
			p.u64(stderrStartActivity).u64(1).u64(0).u64(105).str("building").u64(1 << 30)
		}, wire.ErrTooLong},
		{"UnknownFieldKind", func(p *peerConn) {
			p.u64(stderrResult).u64(1).u64(101).u64(1).u64(7)
		}, ErrProtocol},
		{"ErrorWithPosition", func(p *peerConn) {
			p.u64(stderrError).str("Error").u64(0).str("Error").str("boom").u64(1)
		}, ErrProtocol},
		{"ErrorOfOtherType", func(p *peerConn) {
			p.u64(stderrError).str("Panic")
		}, ErrProtocol},
		{"BadNarHash", func(p *peerConn) {
			p.last().u64(1).str("").str("xyz").strs(nil).u64(0).u64(8).u64(0).strs(nil).str("")
		}, ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dialFake(t, &fakeDaemon{serve: func(p *peerConn) error {
				p.readOp()
				tt.reply(p)
				p.flush()
				if tt.want == io.ErrUnexpectedEOF {
					return p.conn.Close()
				}
				io.Copy(io.Discard, p.conn)
				return nil
			}}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = c.QueryPathInfo(ctx, testPath)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error %q does not wrap %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), "QueryPathInfo") {
				t.Errorf("error %q does not name the op", err)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("op hung until the deadline: %v", err)
			}
			if tt.name == "BadNarHash" {
				// The reply was read completely: the connection is fine.
				return
			}
			if !errors.Is(err, ErrBroken) {
				t.Errorf("error %q does not mark the connection broken", err)
			}
			if _, err := c.IsValidPath(ctx, testPath); !errors.Is(err, ErrBroken) || !strings.Contains(err.Error(), "IsValidPath") {
				t.Errorf("next op on the broken connection: %v", err)
			}
		})
	}
}

func TestHandshakeErrors(t *testing.T) {
	tests := []struct {
		name  string
		greet func(p *peerConn) error
	}{
		{"BadMagic", func(p *peerConn) error {
			p.readU64()
			return p.u64(0x1234).u64(DefaultVersion).flush()
		}},
		{"TooOld", func(p *peerConn) error {
			p.readU64()
			return p.u64(workerMagic2).u64(1<<8 | 21).flush()
		}},
		{"MajorTwo", func(p *peerConn) error {
			p.readU64()
			return p.u64(workerMagic2).u64(2<<8 | 34).flush()
		}},
		{"ClosesAfterMagic", func(p *peerConn) error {
			p.readU64()
			p.u64(workerMagic2).flush()
			return p.conn.Close()
		}},
		{"RefusesConnection", func(p *peerConn) error {
			p.readU64()
			p.u64(workerMagic2).u64(DefaultVersion).flush()
			p.readU64()
			p.readU64()
			p.readU64()
			p.str("2.8.0").errFrame("user 'nobody' is not allowed to connect to the Nix daemon").flush()
			return p.conn.Close()
		}},
		{"ShellNoise", func(p *peerConn) error {
			p.readU64()
			p.raw([]byte("Welcome to the machine!\n")).flush()
			return p.conn.Close()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dialFake(t, &fakeDaemon{greet: tt.greet}, Options{})
			if err == nil {
				c.Close()
				t.Fatal("handshake succeeded")
			}
			if !errors.Is(err, ErrHandshake) {
				t.Errorf("error %q does not wrap ErrHandshake", err)
			}
		})
	}
}

// TestDaemonErrorKeepsConnection: STDERR_ERROR is an *Error with ANSI
// escapes removed and traces, and the next op works.
func TestDaemonErrorKeepsConnection(t *testing.T) {
	c, err := dialFake(t, &fakeDaemon{serve: func(p *peerConn) error {
		p.readOp()
		p.u64(stderrNext).str("a log line\n")
		p.errFrame("path '\x1b[35;1m/nix/store/x-bogus\x1b[0m' is not valid", "while \x1b[1mdoing\x1b[0m it").flush()
		p.readOp()
		return p.last().u64(1).flush()
	}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = c.QueryDerivationOutputMap(ctx, testPath)
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T), want *Error", err, err)
	}
	if de.Op != OpQueryDerivationOutputMap || de.Message != "path '/nix/store/x-bogus' is not valid" ||
		len(de.Traces) != 1 || de.Traces[0] != "while doing it" {
		t.Errorf("error = %+v", de)
	}
	if ok, err := c.IsValidPath(ctx, testPath); err != nil || !ok {
		t.Fatalf("after daemon error: %v, %v", ok, err)
	}
}

// TestCancelUnblocks: a silent daemon does not hold an op past its
// context, and the connection is then broken.
func TestCancelUnblocks(t *testing.T) {
	c, err := dialFake(t, &fakeDaemon{serve: func(p *peerConn) error {
		p.readOp()
		io.Copy(io.Discard, p.conn)
		return nil
	}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.IsValidPath(ctx, testPath)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrBroken) {
		t.Fatalf("error = %v", err)
	}
	if c.Err() == nil {
		t.Fatal("connection not marked broken")
	}
}

// TestNewerDaemon negotiates 1.38 with a daemon that sends features and a
// trust byte, and decodes a 1.37+ BuildResult with CPU times.
func TestNewerDaemon(t *testing.T) {
	out := "/nix/store/8ipix5gylacngpx1cjpq4gji136qrykk-daemontest-ok"
	f := &fakeDaemon{version: 1<<8 | 38, nixVer: "2.30.1", trust: 1, features: []string{"some-feature"},
		serve: func(p *peerConn) error {
			op, drvPath := p.readOp()
			if op != OpBuildDerivation || !strings.HasSuffix(drvPath, ".drv") {
				return errors.New("fake: unexpected request")
			}
			// outputs, inputSrcs, platform, builder, args, env, buildMode
			for range p.readU64() * 4 {
				p.readStr()
			}
			p.r.ReadStrings()
			p.readStr()
			p.readStr()
			p.r.ReadStrings()
			for range p.readU64() * 2 {
				p.readStr()
			}
			p.readU64()
			p.u64(stderrStartActivity).u64(7).u64(3).u64(ActBuild).str("building").u64(1).u64(1).str(drvPath).u64(0)
			p.u64(stderrResult).u64(7).u64(ResBuildLogLine).u64(1).u64(1).str("compiling")
			p.u64(stderrStopActivity).u64(7)
			p.last()
			p.u64(0).str("").u64(1).u64(0).u64(100).u64(105) // status, msg, times
			p.u64(1).u64(1500).u64(0)                        // cpuUser 1500µs, cpuSystem unknown
			p.u64(1).str("sha256:00!out").str(`{"id":"sha256:00!out","outPath":"` + out[len("/nix/store/"):] + `","signatures":[],"dependentRealisations":{}}`)
			return p.flush()
		}}
	var lines []string
	c, err := dialFake(t, f, Options{Version: MaxVersion, Logger: LogFuncs{OnResult: func(r Result) {
		lines = append(lines, r.Fields[0].String)
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Version() != 1<<8|38 || c.Trust() != Trusted || c.NixVersion() != "2.30.1" {
		t.Fatalf("version %#x trust %d nix %q", c.Version(), c.Trust(), c.NixVersion())
	}
	d := &drv.Derivation{
		Outputs:  []drv.Output{{Name: "out", Path: store.MustParsePath(out)}},
		Platform: "x86_64-linux", Builder: "/bin/sh", Args: []string{"-c", "true"},
		Env: []drv.EnvVar{{Key: "out", Value: out}},
	}
	res, err := c.BuildDerivation(context.Background(), store.MustParsePath("/nix/store/mp1slcmdqq3d0fykpbaff760qc4bywwc-daemontest-ok.drv"), d, store.BuildNormal)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != store.StatusBuilt || res.TimesBuilt != 1 || res.StartTime != 100 || res.StopTime != 105 ||
		res.CPUUser != 1500 || res.CPUSystem != 0 || res.BuiltOutputs["out"].String() != out {
		t.Errorf("result = %+v", res)
	}
	if len(lines) != 1 || lines[0] != "compiling" {
		t.Errorf("log lines %q", lines)
	}
}

// TestOldClientNewDaemon: announcing 1.34 to a 1.38 daemon means no
// features and no trust byte.
func TestOldClientNewDaemon(t *testing.T) {
	c, err := dialFake(t, &fakeDaemon{version: 1<<8 | 38, trust: 1, nixVer: "2.30.1"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Version() != DefaultVersion || c.Trust() != TrustUnknown || c.DaemonVersion() != 1<<8|38 {
		t.Errorf("version %#x trust %d daemon %#x", c.Version(), c.Trust(), c.DaemonVersion())
	}
}

// readAddToStoreNar reads AddToStoreNar's fields up to the framed data.
func readAddToStoreNar(p *peerConn) {
	p.readStr() // deriver
	p.readStr() // narHash
	p.r.ReadStrings()
	p.readU64()
	p.readU64()
	p.readU64()
	p.r.ReadStrings()
	p.readStr()
	p.readU64()
	p.readU64()
}

// TestUploadRejectedEarly: the daemon fails an upload before reading the
// data (as 2.8 does for a missing signature); the client stops sending,
// ends the frames, reports the *Error and keeps the connection.
func TestUploadRejectedEarly(t *testing.T) {
	c, err := dialFake(t, &fakeDaemon{serve: func(p *peerConn) error {
		if op, _ := p.readOp(); op != OpAddToStoreNar {
			return errors.New("fake: unexpected op")
		}
		readAddToStoreNar(p)
		p.errFrame("cannot add path '/nix/store/…' because it lacks a valid signature").flush()
		io.Copy(io.Discard, wire.NewFramedReader(p.conn))
		p.readOp()
		return p.last().u64(0).flush()
	}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	info := &store.PathInfo{Path: testPath, NarSize: 1 << 20}
	ctx := context.Background()
	err = c.AddToStoreNar(ctx, info, &endlessNAR{})
	var de *Error
	if !errors.As(err, &de) || !strings.Contains(de.Message, "lacks a valid signature") {
		t.Fatalf("error = %v", err)
	}
	if ok, err := c.IsValidPath(ctx, testPath); err != nil || ok {
		t.Fatalf("after rejected upload: %v, %v", ok, err)
	}
	c.Close()
	storetest.NoGoroutinesIn(t, "/store/daemon/") // the fake peer runs test code only
}

// TestUploadPeerCloses: the daemon hangs up mid-upload; no hang, no leak.
func TestUploadPeerCloses(t *testing.T) {
	c, err := dialFake(t, &fakeDaemon{serve: func(p *peerConn) error {
		p.readOp()
		readAddToStoreNar(p)
		io.CopyN(io.Discard, p.conn, 100)
		return p.conn.Close()
	}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = c.AddToStoreNar(context.Background(), &store.PathInfo{Path: testPath}, &endlessNAR{})
	if !errors.Is(err, ErrBroken) || !strings.Contains(err.Error(), "AddToStoreNar") {
		t.Fatalf("error = %v", err)
	}
	storetest.NoGoroutinesIn(t, "/store/daemon/") // the fake peer runs test code only
}

// endlessNAR is a valid NAR prefix followed by an endless file.
type endlessNAR struct{ hdr []byte }

func (e *endlessNAR) Read(p []byte) (int, error) {
	if e.hdr == nil {
		b := wire.AppendString(nil, "nix-archive-1")
		for _, s := range []string{"(", "type", "regular", "contents"} {
			b = wire.AppendString(b, s)
		}
		e.hdr = wire.AppendUint64(b, 1<<40)
	}
	if len(e.hdr) > 0 {
		n := copy(p, e.hdr)
		e.hdr = e.hdr[n:]
		return n, nil
	}
	clear(p)
	return len(p), nil
}

// TestNarTruncated: the NAR stops mid-file.
func TestNarTruncated(t *testing.T) {
	c, err := dialFake(t, &fakeDaemon{serve: func(p *peerConn) error {
		p.readOp()
		b := wire.AppendString(nil, "nix-archive-1")
		for _, s := range []string{"(", "type", "regular", "contents"} {
			b = wire.AppendString(b, s)
		}
		b = wire.AppendUint64(b, 100)
		p.last().raw(b).raw([]byte("only a little")).flush()
		return p.conn.Close()
	}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = c.NarFromPath(context.Background(), testPath, io.Discard)
	if !errors.Is(err, ErrBroken) || !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "NarFromPath") {
		t.Fatalf("error = %v", err)
	}
}

// TestBuildResultsMatchedByPath: results in another order than requested,
// and merged per derivation as Nix 2.8 does, land on the right targets.
func TestBuildResultsMatchedByPath(t *testing.T) {
	drvA := store.MustParsePath("/nix/store/mp1slcmdqq3d0fykpbaff760qc4bywwc-a.drv")
	opaque := testPath
	c, err := dialFake(t, &fakeDaemon{serve: func(p *peerConn) error {
		p.readU64()
		p.r.ReadStrings()
		p.readU64()
		p.last().u64(2)
		p.str(opaque.String()).u64(uint64(store.StatusAlreadyValid)).str("").u64(0).u64(0).u64(0).u64(0).u64(0)
		p.str(drvA.String() + "!out").u64(uint64(store.StatusPermanentFailure)).str("builder failed").u64(1).u64(0).u64(1).u64(2).u64(0)
		return p.flush()
	}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	targets := []store.DerivedPath{store.BuiltPath(drvA, "out"), store.OpaquePath(opaque), store.BuiltPath(drvA, "dev")}
	res, err := c.BuildPathsWithResults(context.Background(), targets, store.BuildNormal)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Status != store.StatusPermanentFailure || res[1].Status != store.StatusAlreadyValid || res[2] != res[0] {
		t.Errorf("results %+v %+v %+v", res[0], res[1], res[2])
	}
	if err := res[0].Err(targets[0].String()); err == nil || !strings.Contains(err.Error(), "builder failed") {
		t.Errorf("Err() = %v", err)
	}
}

// TestQueryPathInfosPipelined: an error for one path in the middle does not
// stop the others.
func TestQueryPathInfosPipelined(t *testing.T) {
	const n = 2000
	c, err := dialFake(t, &fakeDaemon{serve: func(p *peerConn) error {
		// Every request is read before any is answered: a client that
		// waits for an answer before it sends the next request never
		// gets one, and the test's deadline fails it.
		for range n {
			if op, _ := p.readOp(); op != OpQueryPathInfo {
				return errors.New("fake: unexpected op")
			}
		}
		for i := range n {
			switch i {
			case 7:
				p.errFrame("oops")
			case 8:
				p.last().u64(0)
			default:
				p.last().u64(1).str("").str(strings.Repeat("ab", 32)).strs(nil).u64(1).u64(uint64(i)).u64(0).strs(nil).str("")
			}
			if err := p.flush(); err != nil {
				return err
			}
		}
		return nil
	}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	paths := make([]store.Path, n)
	for i := range paths {
		paths[i] = testPath
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	infos, err := c.QueryPathInfos(ctx, paths)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("no answer: QueryPathInfos does not send its requests before reading answers")
	}
	var de *Error
	if !errors.As(err, &de) || de.Message != "oops" {
		t.Fatalf("error = %v", err)
	}
	if infos[7] != nil || infos[8] != nil || infos[9].NarSize != 9 || infos[n-1].NarSize != n-1 {
		t.Errorf("infos[7..9] = %v %v %v", infos[7], infos[8], infos[9])
	}
	if c.Err() != nil {
		t.Errorf("connection broken: %v", c.Err())
	}
}

// TestCloseUnblocks: Close does not wait for a blocked op, and makes it
// fail.
func TestCloseUnblocks(t *testing.T) {
	asked := make(chan struct{})
	c, err := dialFake(t, &fakeDaemon{serve: func(p *peerConn) error {
		p.readOp()
		close(asked) // the request is in: the client waits for the reply
		io.Copy(io.Discard, p.conn)
		return nil
	}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.IsValidPath(context.Background(), testPath)
		errc <- err
	}()
	<-asked
	c.Close()
	if err := <-errc; !errors.Is(err, ErrBroken) {
		t.Fatalf("error = %v", err)
	}
}

// TestPoolAcquire: a full pool makes Acquire wait for a release or for
// its context; broken connections are not reused.
func TestPoolAcquire(t *testing.T) {
	dials := 0
	p := NewPool(1, func(ctx context.Context) (*Conn, error) {
		dials++
		return dialFake(t, &fakeDaemon{}, Options{})
	})
	defer p.Close()
	ctx := context.Background()
	c1, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := p.Acquire(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire on a full pool = %v", err)
	}
	p.Release(c1)
	c2, err := p.Acquire(ctx)
	if err != nil || c2 != c1 {
		t.Fatalf("Acquire after release = %p, %v; want the idle %p", c2, err, c1)
	}
	c2.Close()
	p.Release(c2)
	c3, err := p.Acquire(ctx)
	if err != nil || c3 == c2 || dials != 2 {
		t.Fatalf("after a broken conn: %p, %v, %d dials", c3, err, dials)
	}
	p.Release(c3)
}

func TestNixAtLeast(t *testing.T) {
	tests := []struct {
		v    string
		want bool
	}{
		{"2.8.0", false},
		{"2.17.1", false},
		{"2.18.0", true},
		{"2.18pre20230901_abcdef", true},
		{"2.30.0", true},
		{"3.0", true},
		{"1.11.16", false},
		{"", false},
		{"nix", false},
		{"2", false},
	}
	for _, tt := range tests {
		if got := nixAtLeast(tt.v, 2, 18); got != tt.want {
			t.Errorf("nixAtLeast(%q, 2, 18) = %v, want %v", tt.v, got, tt.want)
		}
	}
}

func TestStripANSI(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"path '\x1b[35;1m/nix/store/x\x1b[0m' is not valid", "path '/nix/store/x' is not valid"},
		{"\x1b[31;1merror:\x1b[0m boom", "error: boom"},
		{"trailing \x1b[", "trailing "},
		{"lone \x1b", "lone "},
		{"two-char \x1b(Bok", "two-char Bok"},
	}
	for _, tt := range tests {
		if got := StripANSI(tt.in); got != tt.want {
			t.Errorf("StripANSI(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
