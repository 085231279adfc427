package nar

import (
	"bufio"
	"errors"
	"io"
)

// Copy copies exactly one NAR from src to dst, validating it as a Reader
// does, and returns the number of bytes copied. It reads nothing past the
// end of the NAR, so src may be a protocol stream that continues after it;
// for the same reason it cannot detect trailing data. On error dst may
// hold a prefix of the NAR.
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	return CopyOptions(dst, src, ReaderOptions{})
}

// CopyOptions is Copy with the given bounds.
func CopyOptions(dst io.Writer, src io.Reader, opts ReaderOptions) (int64, error) {
	bw := bufio.NewWriterSize(dst, 64<<10)
	nr := NewReaderOptions(src, opts)
	nr.tee = bw
	for {
		_, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			bw.Flush()
			return nr.Offset(), err
		}
		// Next skips the contents, which passes them through the tee.
	}
	return nr.Offset(), bw.Flush()
}

// ErrNotConsumed is what Hand's reader returned to the NAR's writer once
// consume returned before the NAR's end.
var ErrNotConsumed = errors.New("nar: NAR not read to its end")

// Hand passes the one NAR at the head of src to consume as a reader of
// exactly that NAR, validated as it passes (Copy), for a stream that
// carries NARs back to back. It returns consume's error and the NAR's own
// (one that does not parse or is cut short, or ErrNotConsumed when
// consume stopped early); src is past the NAR only when both are nil.
func Hand(src io.Reader, consume func(io.Reader) error) (consumeErr, narErr error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := consume(pr)
		pr.CloseWithError(ErrNotConsumed)
		done <- err
	}()
	_, narErr = Copy(pw, src)
	pw.CloseWithError(narErr)
	return <-done, narErr
}
