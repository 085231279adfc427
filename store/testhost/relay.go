package testhost

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// RelayOptions shape a Relay's link. The zero value relays at full speed.
type RelayOptions struct {
	// RateBytesPerSec limits each direction of each connection; 0 means
	// unlimited. 100 Mbit/s is 12_500_000.
	RateBytesPerSec int64
	// Delay is added to every byte in each direction (half the round
	// trip time).
	Delay time.Duration
}

// Relay is a TCP relay on 127.0.0.1 that forwards every connection to a
// target, shaping it like a slow link (this kernel has no sch_netem), and
// can drop its connections on demand. Bytes are modelled as passing a
// link of the given rate (queued in order, one serialisation time per
// chunk) and then a fixed delay.
type Relay struct {
	// Addr is "127.0.0.1:PORT"; Port the port alone.
	Addr string
	Port int

	target string
	opts   RelayOptions
	l      net.Listener
	wg     sync.WaitGroup

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closed  bool
	cutLeft int64 // bytes still allowed before the cut; <0: no cut armed
	relayed int64
	turns   int64
}

// link is the state the two directions of one relayed connection share:
// which way the last bytes were delivered, to count turns.
type link struct {
	mu   sync.Mutex
	last int // 0: nothing delivered yet; 1: to the target; 2: back
}

// NewRelay starts a relay to target ("127.0.0.1:PORT"); t.Cleanup stops it.
func NewRelay(t testing.TB, target string, opts RelayOptions) *Relay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testhost: relay: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	r := &Relay{
		Addr:    "127.0.0.1:" + strconv.Itoa(port),
		Port:    port,
		target:  target,
		opts:    opts,
		l:       l,
		conns:   map[net.Conn]struct{}{},
		cutLeft: -1,
	}
	t.Cleanup(r.Kill)
	r.wg.Add(1)
	go r.accept()
	return r
}

// HostAddr returns "127.0.0.1:PORT" of the host's sshd, the usual relay
// target.
func (h *Host) HostAddr() string { return "127.0.0.1:" + strconv.Itoa(h.Port) }

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.l.Accept()
		if err != nil {
			return
		}
		d, err := net.DialTimeout("tcp", r.target, 10*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		if !r.track(c, d) {
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			var both sync.WaitGroup
			both.Add(2)
			var l link
			go func() { defer both.Done(); r.pipe(c, d, &l, 1) }()
			go func() { defer both.Done(); r.pipe(d, c, &l, 2) }()
			both.Wait()
			r.drop(c)
			r.drop(d)
		}()
	}
}

func (r *Relay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
	return true
}

type chunk struct {
	b       []byte
	deliver time.Time
}

// pipe copies src to dst through the shaped link: a reader stamps each
// chunk with its delivery time, a writer waits for it. The queue between
// them is bounded, so a full link pushes back on the sender.
func (r *Relay) pipe(src, dst net.Conn, l *link, dir int) {
	const chunkSize = 16 << 10
	depth := 8
	if r.opts.RateBytesPerSec > 0 && r.opts.Delay > 0 {
		// Room for about two bandwidth-delay products.
		bdp := float64(r.opts.RateBytesPerSec) * r.opts.Delay.Seconds()
		depth = max(depth, int(2*bdp/chunkSize)+1)
	}
	queue := make(chan chunk, depth)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.write(dst, src, queue, l, dir)
	}()
	var linkFree time.Time
	for {
		buf := make([]byte, chunkSize)
		n, err := src.Read(buf)
		if n > 0 {
			now := time.Now()
			start := now
			if linkFree.After(start) {
				start = linkFree
			}
			if r.opts.RateBytesPerSec > 0 {
				linkFree = start.Add(time.Duration(float64(n) / float64(r.opts.RateBytesPerSec) * float64(time.Second)))
			} else {
				linkFree = start
			}
			select {
			case queue <- chunk{b: buf[:n], deliver: linkFree.Add(r.opts.Delay)}:
			case <-done:
				src.Close()
				return
			}
		}
		if err != nil {
			break
		}
	}
	close(queue)
	<-done
}

func (r *Relay) write(dst, src net.Conn, queue <-chan chunk, l *link, dir int) {
	timer := time.NewTimer(0)
	<-timer.C
	for c := range queue {
		if d := time.Until(c.deliver); d > 0 {
			timer.Reset(d)
			<-timer.C
		}
		b, cut := r.take(c.b)
		if len(b) > 0 {
			r.delivered(l, dir)
			if _, err := dst.Write(b); err != nil {
				r.drop(dst)
				r.drop(src)
				return
			}
		}
		if cut {
			r.cutAll()
			return
		}
	}
	// The sender closed its side: pass the half-close on.
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// take returns the part of b that may pass before a cut, and whether the
// cut happens now.
func (r *Relay) take(b []byte) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cutLeft < 0 {
		r.relayed += int64(len(b))
		return b, false
	}
	if int64(len(b)) < r.cutLeft {
		r.cutLeft -= int64(len(b))
		r.relayed += int64(len(b))
		return b, false
	}
	b = b[:r.cutLeft]
	r.relayed += int64(len(b))
	r.cutLeft = -1
	return b, true
}

// delivered counts a turn when bytes go the other way from the last.
func (r *Relay) delivered(l *link, dir int) {
	l.mu.Lock()
	turned := l.last != 0 && l.last != dir
	l.last = dir
	l.mu.Unlock()
	if turned {
		r.mu.Lock()
		r.turns++
		r.mu.Unlock()
	}
}

// Turns returns how often, summed over its connections, the relay has
// delivered bytes in the other direction from the bytes before: a
// request and its answer are one turn each way, so a protocol that waits
// for every answer makes two turns per request, and one that pipelines
// its requests makes few however many it sends.
func (r *Relay) Turns() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.turns
}

// Relayed returns how many bytes have passed the relay, both directions.
func (r *Relay) Relayed() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.relayed
}

// CutAfter drops every connection once n more bytes (both directions
// together) have passed, as a failing link would. The relay keeps
// accepting new connections.
func (r *Relay) CutAfter(n int64) {
	r.mu.Lock()
	r.cutLeft = n
	r.mu.Unlock()
	if n == 0 {
		r.cutAll()
	}
}

// Cut drops every current connection now.
func (r *Relay) Cut() { r.cutAll() }

func (r *Relay) cutAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cutLeft = -1
	for c := range r.conns {
		abort(c)
		delete(r.conns, c)
	}
}

func (r *Relay) drop(c net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	abort(c)
	delete(r.conns, c)
}

// abort closes c with a reset, like a link that vanished.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// Kill stops the relay: no new connections, every current one dropped.
// It waits for the relay's goroutines to end.
func (r *Relay) Kill() {
	r.mu.Lock()
	already := r.closed
	r.closed = true
	r.mu.Unlock()
	if !already {
		r.l.Close()
	}
	r.cutAll()
	r.wg.Wait()
}
