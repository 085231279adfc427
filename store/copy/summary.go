package copy

import (
	"fmt"
	"io"
	"time"
)

// WriteSummary writes what nbuild copy -v prints after the copy to or
// from (from) the ssh host remote that r describes: how many paths went, by
// which protocol and compression (and how many chunks were stored
// because compressing them did not pay), then what a delta copy did (how
// many paths had a predecessor on the host, the NAR bytes made there from
// its own files, the bytes sent, the nbuild that assembled them and its
// times, the changed files sent as patches), or why there was none.
func (r *HostResult) WriteSummary(w io.Writer, remote string, from bool) {
	how := r.Compression
	if r.StoredChunks > 0 {
		how = fmt.Sprintf("%s, %d of %d chunks stored: compressing them did not pay", how, r.StoredChunks, r.Chunks)
	}
	if from {
		fmt.Fprintf(w, "%d paths received (%s)\n", len(r.Sent), r.Compression)
	} else {
		fmt.Fprintf(w, "%d paths sent (%s, %s)\n", len(r.Sent), r.Protocol, how)
	}
	if d := r.Delta; d != nil && d.Used {
		fmt.Fprintf(w, "delta: %d of %d paths had a predecessor on %s; %s of %s of NAR made there from its own files, %s of files sent as %s (nbuild on the host: %s; indexing %s, assembling %s)\n",
			d.Predecessors, len(r.Sent), remote, formatBytes(d.ReusedBytes), formatBytes(d.NarBytes),
			formatBytes(d.LiteralBytes), formatBytes(d.WireBytes), d.Binary,
			d.RemoteIndex.Round(time.Millisecond), d.RemoteAssemble.Round(time.Millisecond))
		if d.PatchedFiles > 0 {
			fmt.Fprintf(w, "delta: %d changed files (%s) went as %s of patches against their predecessors\n",
				d.PatchedFiles, formatBytes(d.PatchedBytes), formatBytes(d.PatchBytes))
		}
	} else if d != nil && d.Why != "" {
		fmt.Fprintf(w, "delta: not used: %s\n", d.Why)
	}
}

// formatBytes renders a byte count for people: "707 B", "3.2 KiB",
// "19.5 MiB".
func formatBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
