package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nbuild/nbuild/nar/wire"
)

// Op is a worker-protocol operation code (2.8 worker-protocol.hh WorkerOp).
type Op uint64

const (
	opHandshake                Op = 0 // not an op: the greeting's stderr loop
	OpIsValidPath              Op = 1
	OpAddToStore               Op = 7
	OpAddTextToStore           Op = 8
	OpBuildPaths               Op = 9
	OpEnsurePath               Op = 10
	OpAddTempRoot              Op = 11
	OpSetOptions               Op = 19
	OpQueryPathInfo            Op = 26
	OpQueryValidPaths          Op = 31
	OpBuildDerivation          Op = 36
	OpNarFromPath              Op = 38
	OpAddToStoreNar            Op = 39
	OpQueryMissing             Op = 40
	OpQueryDerivationOutputMap Op = 41
	OpAddMultipleToStore       Op = 44
	OpBuildPathsWithResults    Op = 46
)

var opNames = map[Op]string{
	opHandshake:                "handshake",
	OpIsValidPath:              "IsValidPath",
	OpAddToStore:               "AddToStore",
	OpAddTextToStore:           "AddTextToStore",
	OpBuildPaths:               "BuildPaths",
	OpEnsurePath:               "EnsurePath",
	OpAddTempRoot:              "AddTempRoot",
	OpSetOptions:               "SetOptions",
	OpQueryPathInfo:            "QueryPathInfo",
	OpQueryValidPaths:          "QueryValidPaths",
	OpBuildDerivation:          "BuildDerivation",
	OpNarFromPath:              "NarFromPath",
	OpAddToStoreNar:            "AddToStoreNar",
	OpQueryMissing:             "QueryMissing",
	OpQueryDerivationOutputMap: "QueryDerivationOutputMap",
	OpAddMultipleToStore:       "AddMultipleToStore",
	OpBuildPathsWithResults:    "BuildPathsWithResults",
}

func (o Op) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("op %d", uint64(o))
}

// begin takes the connection for one op: it locks c, fails fast when c is
// broken, and arranges for ctx to interrupt the op. end must be called with
// the op's error; it unlocks and returns the error to hand to the caller.
func (c *Conn) begin(ctx context.Context, op Op) (end func(err error) error, err error) {
	c.mu.Lock()
	if err := c.brokenErr(); err != nil {
		c.mu.Unlock()
		return nil, &OpError{Op: op, Err: err}
	}
	if err := ctx.Err(); err != nil {
		c.mu.Unlock()
		return nil, &OpError{Op: op, Err: err}
	}
	stop := c.watch(ctx)
	end = func(err error) error {
		interrupted := !stop()
		defer c.mu.Unlock()
		if interrupted {
			// The stream was closed under the op: whatever it returned, the
			// connection is gone, and the reason is the context.
			return &OpError{Op: op, Err: c.breakWith(fmt.Errorf("%w: %w", ErrBroken, ctx.Err()))}
		}
		if err == nil || isDaemonError(err) {
			return err
		}
		var se *syncedError
		if errors.As(err, &se) {
			return &OpError{Op: op, Err: se.err}
		}
		// Anything else left the stream at an unknown position.
		if errors.Is(err, ErrBroken) {
			err = c.breakWith(err)
			c.rwc.Close()
			return &OpError{Op: op, Err: err}
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		err = c.breakWith(fmt.Errorf("%w: %w", ErrBroken, err))
		c.rwc.Close()
		return &OpError{Op: op, Err: err}
	}
	return end, nil
}

// syncedError wraps an error after which the stream is still in step: a
// reply read completely whose contents are invalid, or a caller's mistake
// found before anything was sent.
type syncedError struct{ err error }

func (e *syncedError) Error() string { return e.err.Error() }
func (e *syncedError) Unwrap() error { return e.err }

func synced(err error) error { return &syncedError{err} }

// simple runs an op whose request is in c.buf (after the op code, appended
// by req) and whose reply is read by reply after STDERR_LAST.
func (c *Conn) simple(ctx context.Context, op Op, req func(b []byte) []byte, reply func(r *wire.Reader) error) error {
	end, err := c.begin(ctx, op)
	if err != nil {
		return err
	}
	return end(c.roundTrip(op, req, reply))
}

func (c *Conn) roundTrip(op Op, req func(b []byte) []byte, reply func(r *wire.Reader) error) error {
	b := wire.AppendUint64(c.buf[:0], uint64(op))
	if req != nil {
		b = req(b)
	}
	c.buf = b
	if err := c.send(); err != nil {
		return err
	}
	if _, err := c.processStderr(op, nil); err != nil {
		return err
	}
	if reply == nil {
		return nil
	}
	return reply(c.r)
}

// readAck reads the u64 1 that many ops reply with.
func readAck(r *wire.Reader) error {
	v, err := r.ReadUint64()
	if err != nil {
		return err
	}
	if v != 1 {
		return fmt.Errorf("%w: expected reply 1, got %d", ErrProtocol, v)
	}
	return nil
}
