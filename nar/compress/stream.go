package compress

import (
	"bufio"
	"io"
)

// Compress compresses all of src into dst with algo ("zstd", "xz",
// "none"), as NewWriter with opts does, and closes the stream (not dst).
func Compress(dst io.Writer, src io.Reader, algo string, opts Options) error {
	zw, err := NewWriter(dst, algo, opts)
	if err != nil {
		return err
	}
	if _, err := io.Copy(zw, src); err != nil {
		zw.Close()
		return err
	}
	return zw.Close()
}

// Decompress decompresses all of src, streams of algo one after another,
// into dst.
func Decompress(dst io.Writer, src io.Reader, algo string) error {
	zr, err := NewReader(bufio.NewReaderSize(src, 256<<10), algo)
	if err != nil {
		return err
	}
	defer zr.Close()
	w := bufio.NewWriterSize(dst, 256<<10)
	if _, err := io.Copy(w, zr); err != nil {
		return err
	}
	return w.Flush()
}
