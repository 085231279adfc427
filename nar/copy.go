package nar

import (
	"bufio"
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
