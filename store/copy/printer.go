package copy

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nbuild/nbuild/store"
)

// Printer reports a copy to a person, as nbuild copy and nix-copy-closure
// do: "copying N paths..." once the missing paths are known
// (nix-copy-closure's line; printed only when there is something to send
// unless NixCompat), with Verbose (and NixCompat) a "copying path ..."
// line as each path starts, and on a terminal one status line: paths and
// bytes done of the total, rate and ETA. Its methods fit
// HostOptions.Missing, Sending and Progress and may be called from
// several goroutines. It also remembers the copy's plan (Plan), so that
// an interrupted copy can say how far it got.
type Printer struct {
	w    io.Writer
	opts PrinterOptions

	mu    sync.Mutex
	rate  rateMeter
	last  time.Time
	drawn bool
	// closure and missing are the copy's plan (HostOptions.Missing);
	// missing is nil until it is known.
	closure, missing []*store.PathInfo
}

// PrinterOptions tune a Printer. The zero value prints the "copying N
// paths..." line and no status line.
type PrinterOptions struct {
	// Terminal draws the status line: the writer is a terminal.
	Terminal bool
	// Quiet prints no "copying ..." lines (nix-copy-closure --quiet).
	Quiet bool
	// Verbose prints a line per path as its copy starts.
	Verbose bool
	// NixCompat prints what Nix 2.8's nix-copy-closure prints: a line per
	// path, and "copying 0 paths..." when nothing is missing.
	NixCompat bool
	// From and To name the two stores in the per-path lines, as Nix's
	// store URIs do ("ssh://HOST", "local store"); From is "" for the
	// local store, and the lines then name the destination.
	From, To string
}

// NewPrinter returns a Printer writing to w.
func NewPrinter(w io.Writer, opts PrinterOptions) *Printer {
	return &Printer{w: w, opts: opts}
}

// Plan returns the copy's plan as Missing received it: the closure, and
// the paths it lacked, nil while that is not known.
func (p *Printer) Plan() (closure, missing []*store.PathInfo) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closure, p.missing
}

// Missing records the copy's plan and prints "copying N paths..."
// (HostOptions.Missing).
func (p *Printer) Missing(closure, missing []*store.PathInfo) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if closure != nil {
		p.closure = closure
	}
	p.missing = missing
	if missing == nil {
		p.missing = []*store.PathInfo{}
	}
	if !p.opts.Quiet && (len(missing) > 0 || p.opts.NixCompat) {
		p.clearLocked()
		fmt.Fprintf(p.w, "copying %d paths...\n", len(missing))
	}
}

// Sending prints Nix's line for a path whose copy starts (2.8
// store-api.cc makeCopyPathMessage) (HostOptions.Sending).
func (p *Printer) Sending(info *store.PathInfo) {
	if p.opts.Quiet || !(p.opts.Verbose || p.opts.NixCompat) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	if p.opts.From == "" {
		fmt.Fprintf(p.w, "copying path '%s' to '%s'...\n", info.Path, p.opts.To)
	} else {
		fmt.Fprintf(p.w, "copying path '%s' from '%s'...\n", info.Path, p.opts.From)
	}
}

// Progress redraws the status line, at most ten times a second but always
// for the last path (HostOptions.Progress).
func (p *Printer) Progress(pr Progress) {
	if !p.opts.Terminal {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	rate := p.rate.add(now, pr.Bytes)
	if now.Sub(p.last) < 100*time.Millisecond && pr.Paths < pr.TotalPaths {
		return
	}
	p.last = now
	fmt.Fprintf(p.w, "\r\x1b[K%s", statusLine(pr, rate))
	p.drawn = true
}

// Clear removes the status line, before other output and at the end.
func (p *Printer) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
}

func (p *Printer) clearLocked() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

// rateMeter measures a copy's rate from its first byte, not from the
// start of the command: the ssh login and the closure query before it
// would make the first figures absurd (an ETA of 1h35m38s). It reports
// no rate until minRateWindow has passed since the first byte.
type rateMeter struct {
	t0 time.Time
	b0 int64
}

const minRateWindow = time.Second

// add records that bytes have been sent by now and returns the rate in
// bytes per second, or 0 while it is not yet meaningful.
func (m *rateMeter) add(now time.Time, bytes int64) float64 {
	if m.t0.IsZero() {
		if bytes > 0 {
			m.t0, m.b0 = now, bytes
		}
		return 0
	}
	d := now.Sub(m.t0)
	if d < minRateWindow || bytes <= m.b0 {
		return 0
	}
	return float64(bytes-m.b0) / d.Seconds()
}

// statusLine renders a progress line, e.g.
// "copied 3/5 paths, 12.0/20.0 MiB, 4.0 MiB/s, ETA 2s"; without a rate
// (0: not known yet) it shows neither rate nor ETA.
func statusLine(pr Progress, rate float64) string {
	const mib = 1 << 20
	s := fmt.Sprintf("copied %d/%d paths, %.1f/%.1f MiB", pr.Paths, pr.TotalPaths,
		float64(pr.Bytes)/mib, float64(pr.TotalBytes)/mib)
	if rate > 0 {
		s += fmt.Sprintf(", %.1f MiB/s", rate/mib)
		if left := pr.TotalBytes - pr.Bytes; left > 0 {
			eta := time.Duration(float64(left) / rate * float64(time.Second))
			s += ", ETA " + eta.Round(time.Second).String()
		}
	}
	return s
}
