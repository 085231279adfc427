package daemon

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nbuild/nbuild/nar/wire"
)

// Message tags of the stderr loop (2.8 src/libstore/worker-protocol.hh).
const (
	stderrNext          = 0x6f6c6d67
	stderrRead          = 0x64617461
	stderrWrite         = 0x64617416
	stderrLast          = 0x616c7473
	stderrError         = 0x63787470
	stderrStartActivity = 0x53545254
	stderrStopActivity  = 0x53544f50
	stderrResult        = 0x52534c54
)

// Activity types and result types worth naming (2.8 src/libutil/logging.hh).
const (
	ActCopyPath  = 100
	ActRealise   = 102
	ActBuilds    = 104
	ActBuild     = 105
	ActSubstitue = 108

	ResBuildLogLine     = 101
	ResSetPhase         = 104
	ResProgress         = 105
	ResPostBuildLogLine = 107
)

// logTailLines is how many build log lines an op keeps for its error.
const logTailLines = 10

// Field is one field of an activity or result: an integer or a string.
type Field struct {
	IsString bool
	Int      uint64
	String   string
}

// Activity is a START_ACTIVITY message. For a build (Type ActBuild) the
// first field is the .drv path.
type Activity struct {
	ID     uint64
	Level  uint64 // verbosity, 0 error … 7 vomit
	Type   uint64
	Text   string
	Fields []Field
	Parent uint64
}

// Result is a RESULT message of an activity; build log lines are results
// of type ResBuildLogLine with the line as the first field.
type Result struct {
	ActivityID uint64
	Type       uint64
	Fields     []Field
}

// Logger receives what the daemon reports while it works on an op. The
// daemon filters plain messages by the verbosity set with SetOptions but
// sends every activity and result: filter by Activity.Level if needed.
// Calls for one Conn never overlap, but may come from a goroutine other
// than the caller's during uploads.
type Logger interface {
	// Log receives a plain message (STDERR_NEXT) without its newline.
	Log(msg string)
	StartActivity(a Activity)
	StopActivity(id uint64)
	Result(r Result)
}

// LogFuncs is a Logger from optional functions.
type LogFuncs struct {
	OnLog           func(msg string)
	OnStartActivity func(a Activity)
	OnStopActivity  func(id uint64)
	OnResult        func(r Result)
}

func (f LogFuncs) Log(msg string) {
	if f.OnLog != nil {
		f.OnLog(msg)
	}
}

func (f LogFuncs) StartActivity(a Activity) {
	if f.OnStartActivity != nil {
		f.OnStartActivity(a)
	}
}

func (f LogFuncs) StopActivity(id uint64) {
	if f.OnStopActivity != nil {
		f.OnStopActivity(id)
	}
}

func (f LogFuncs) Result(r Result) {
	if f.OnResult != nil {
		f.OnResult(r)
	}
}

type discard struct{}

func (discard) Log(string)             {}
func (discard) StartActivity(Activity) {}
func (discard) StopActivity(uint64)    {}
func (discard) Result(Result)          {}

// Error is an error the daemon reported for an op (STDERR_ERROR). The
// connection stays usable.
type Error struct {
	Op      Op
	Message string // ANSI escapes removed
	Traces  []string
	Status  uint64 // exit status, protocol < 1.26 only
	// LogTail holds the last build log lines the op saw, if any.
	LogTail []string
}

func (e *Error) Error() string {
	return fmt.Sprintf("daemon: %s: %s", e.Op, e.Message)
}

// OpError is a failure of the connection itself during an op: an I/O error,
// a malformed or unexpected message, a cancelled context. It wraps
// ErrBroken when the connection cannot be used any more.
type OpError struct {
	Op  Op
	Err error
}

func (e *OpError) Error() string { return fmt.Sprintf("daemon: %s: %v", e.Op, e.Err) }
func (e *OpError) Unwrap() error { return e.Err }

// processStderr runs the stderr loop of op until STDERR_LAST (nil) or
// STDERR_ERROR (*Error). Any other error means the stream is out of step.
// It returns the op's build log tail. (2.8 remote-store.cc
// RemoteStore::Connection::processStderr)
func (c *Conn) processStderr(op Op, tail *logTail) (*logTail, error) {
	if tail == nil {
		tail = &logTail{}
	}
	r := c.r
	for {
		tag, err := r.ReadUint64()
		if err != nil {
			return tail, err
		}
		switch tag {
		case stderrLast:
			return tail, nil
		case stderrNext:
			s, err := r.ReadString()
			if err != nil {
				return tail, err
			}
			c.logger.Log(strings.TrimSuffix(s, "\n"))
		case stderrError:
			e, err := c.readError(op)
			if err != nil {
				return tail, err
			}
			e.LogTail = tail.lines()
			return tail, e
		case stderrStartActivity:
			d := decoder{wire.Decoder{R: r}}
			a := Activity{ID: d.U64(), Level: d.U64(), Type: d.U64(), Text: d.Str()}
			a.Fields = c.readFields(&d)
			a.Parent = d.U64()
			if d.Err != nil {
				return tail, d.Err
			}
			c.logger.StartActivity(a)
		case stderrStopActivity:
			id, err := r.ReadUint64()
			if err != nil {
				return tail, err
			}
			c.logger.StopActivity(id)
		case stderrResult:
			d := decoder{wire.Decoder{R: r}}
			res := Result{ActivityID: d.U64(), Type: d.U64()}
			res.Fields = c.readFields(&d)
			if d.Err != nil {
				return tail, d.Err
			}
			if res.Type == ResBuildLogLine && len(res.Fields) > 0 && res.Fields[0].IsString {
				tail.add(res.Fields[0].String)
			}
			c.logger.Result(res)
		case stderrRead, stderrWrite:
			// Only ImportPaths, ExportPath and pre-1.23 uploads use these,
			// and this client sends none of them.
			return tail, fmt.Errorf("%w: unexpected %s message", ErrProtocol, tagName(tag))
		default:
			return tail, fmt.Errorf("%w: unknown stderr message tag %#x", ErrProtocol, tag)
		}
	}
}

func tagName(tag uint64) string {
	if tag == stderrRead {
		return "STDERR_READ"
	}
	return "STDERR_WRITE"
}

// readError decodes the body of STDERR_ERROR (2.8 serialise.cc readError).
func (c *Conn) readError(op Op) (*Error, error) {
	d := decoder{wire.Decoder{R: c.r}}
	e := &Error{Op: op}
	if !c.has(26) {
		e.Message = StripANSI(d.Str())
		e.Status = d.U64()
		return e, d.Err
	}
	if typ := d.Str(); d.Err == nil && typ != "Error" {
		return nil, fmt.Errorf("%w: error frame of type %q", ErrProtocol, typ)
	}
	d.U64() // level
	d.Str() // name, unused
	e.Message = StripANSI(d.Str())
	d.noPos()
	n := d.Count("error traces", 1024)
	for range n {
		d.noPos()
		if hint := d.Str(); d.Err == nil {
			e.Traces = append(e.Traces, StripANSI(hint))
		}
	}
	if d.Err != nil {
		return nil, d.Err
	}
	return e, nil
}

// noPos reads the position flag of an error or trace, which Nix always
// sends as 0.
func (d *decoder) noPos() {
	if havePos := d.U64(); d.Err == nil && havePos != 0 {
		d.Err = fmt.Errorf("%w: error with a position", ErrProtocol)
	}
}

func (c *Conn) readFields(d *decoder) []Field {
	n := d.Count("fields", 64)
	if d.Err != nil {
		return nil
	}
	fs := make([]Field, n)
	for i := range fs {
		switch kind := d.U64(); kind {
		case 0:
			fs[i].Int = d.U64()
		case 1:
			fs[i].IsString = true
			fs[i].String = d.Str()
		default:
			if d.Err == nil {
				d.Err = fmt.Errorf("%w: unknown field type %d", ErrProtocol, kind)
			}
		}
		if d.Err != nil {
			return nil
		}
	}
	return fs
}

// logTail keeps the last build log lines of an op.
type logTail struct {
	ring [logTailLines]string
	n    int
}

func (t *logTail) add(line string) {
	t.ring[t.n%logTailLines] = strings.TrimSuffix(line, "\n")
	t.n++
}

func (t *logTail) lines() []string {
	if t == nil || t.n == 0 {
		return nil
	}
	k := min(t.n, logTailLines)
	out := make([]string, 0, k)
	for i := t.n - k; i < t.n; i++ {
		out = append(out, t.ring[i%logTailLines])
	}
	return out
}

// StripANSI removes ANSI escape sequences (colours) from Nix messages.
func StripANSI(s string) string {
	if strings.IndexByte(s, 0x1b) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != 0x1b {
			b.WriteByte(s[i])
			continue
		}
		// ESC [ params final-byte (0x40-0x7e); a lone ESC is dropped.
		if i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
			continue
		}
		i++ // ESC and one following byte (two-character sequence)
	}
	return b.String()
}

// isDaemonError reports whether err is an error the daemon sent, after
// which the connection is still in step.
func isDaemonError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}
