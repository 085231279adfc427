package explain

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/nbuild/nbuild/store"
)

// DiffReport is the JSON form of a DiffResult, what `nbuild graph --diff
// --format json` prints. Store paths are full paths ("/nix/store/…").
//
//	{
//	  "version": 1,
//	  "newRoots": [PATH...], "oldRoots": [PATH...],
//	  "changedCount": N,   // derivations of the new closure not in the old one
//	  "goneCount": N,      // derivations of the old closure not in the new one
//	  "causes": [          // root causes, sorted by path
//	    {"path": PATH, "old": PATH (absent when nothing corresponds),
//	     "explains": N,    // changed derivations that follow from it, itself included
//	     "changes": [      // absent when "old" is
//	       {"attribute": "env NAME" | "args" | "builder" | "system" |
//	                     "inputSrcs" | "inputDrvs" | "outputs",
//	        "status": "changed" | "added" | "removed",
//	        "old": STRING, "new": STRING,  // absent when added / removed
//	        "edits": [{"op": "=" | "-" | "+", "text": STRING}...]}]}],
//	  "changed": [         // every changed derivation, dependencies first
//	    {"path": PATH, "old": PATH (absent when none), "causes": [PATH...]}],
//	  "gone": [PATH...]    // sorted
//	}
//
// The edits of a changed attribute are by lines when a value has several,
// by words otherwise (see Edit).
type DiffReport struct {
	Version      int             `json:"version"`
	NewRoots     []string        `json:"newRoots"`
	OldRoots     []string        `json:"oldRoots"`
	ChangedCount int             `json:"changedCount"`
	GoneCount    int             `json:"goneCount"`
	Causes       []CauseReport   `json:"causes"`
	Changed      []ChangedReport `json:"changed"`
	Gone         []string        `json:"gone"`
}

// CauseReport is a root cause in a DiffReport.
type CauseReport struct {
	Path     string         `json:"path"`
	Old      string         `json:"old,omitempty"`
	Explains int            `json:"explains"`
	Changes  []ChangeReport `json:"changes,omitempty"`
}

// ChangeReport is a Change in a DiffReport.
type ChangeReport struct {
	Attribute string       `json:"attribute"`
	Status    string       `json:"status"`
	Old       *string      `json:"old,omitempty"`
	New       *string      `json:"new,omitempty"`
	Edits     []EditReport `json:"edits,omitempty"`
}

// EditReport is an Edit in a DiffReport.
type EditReport struct {
	Op   string `json:"op"`
	Text string `json:"text"`
}

// ChangedReport is a changed derivation in a DiffReport.
type ChangedReport struct {
	Path   string   `json:"path"`
	Old    string   `json:"old,omitempty"`
	Causes []string `json:"causes"`
}

// Report returns the JSON form of r.
func (r *DiffResult) Report() *DiffReport {
	rep := &DiffReport{
		Version:      1,
		NewRoots:     pathStrings(r.NewRoots),
		OldRoots:     pathStrings(r.OldRoots),
		ChangedCount: len(r.Changed),
		GoneCount:    len(r.Gone),
		Causes:       []CauseReport{},
		Changed:      []ChangedReport{},
		Gone:         pathStrings(r.Gone),
	}
	for _, rc := range r.Roots {
		cr := CauseReport{Path: rc.New.String(), Explains: rc.Explains}
		if !rc.Old.IsZero() {
			cr.Old = rc.Old.String()
		}
		for _, c := range rc.Own {
			ch := ChangeReport{Attribute: c.What, Status: c.Status}
			if c.Status != "added" {
				ch.Old = &c.Old
			}
			if c.Status != "removed" {
				ch.New = &c.New
			}
			for _, e := range c.Edits {
				ch.Edits = append(ch.Edits, EditReport{Op: e.Op, Text: e.Text})
			}
			cr.Changes = append(cr.Changes, ch)
		}
		rep.Causes = append(rep.Causes, cr)
	}
	for _, c := range r.Changed {
		cr := ChangedReport{Path: c.New.String(), Causes: pathStrings(c.Causes)}
		if !c.Old.IsZero() {
			cr.Old = c.Old.String()
		}
		rep.Changed = append(rep.Changed, cr)
	}
	return rep
}

// Result turns a report back into a DiffResult, checking its paths.
func (rep *DiffReport) Result() (*DiffResult, error) {
	if rep.Version != 1 {
		return nil, fmt.Errorf("explain: diff report version %d, want 1", rep.Version)
	}
	r := &DiffResult{}
	var err error
	parse := func(ss []string) []store.Path {
		if ss == nil || err != nil {
			return nil
		}
		ps := make([]store.Path, len(ss))
		for i, s := range ss {
			if ps[i], err = store.ParsePath(s); err != nil {
				return nil
			}
		}
		return ps
	}
	parseOpt := func(s string) store.Path {
		if s == "" || err != nil {
			return store.Path{}
		}
		var p store.Path
		p, err = store.ParsePath(s)
		return p
	}
	r.NewRoots, r.OldRoots, r.Gone = parse(rep.NewRoots), parse(rep.OldRoots), parse(rep.Gone)
	byPath := map[store.Path]*Changed{}
	for _, cr := range rep.Changed {
		c := &Changed{New: parseOpt(cr.Path), Old: parseOpt(cr.Old), Causes: parse(cr.Causes)}
		byPath[c.New] = c
		r.Changed = append(r.Changed, c)
	}
	for _, cr := range rep.Causes {
		p := parseOpt(cr.Path)
		if err != nil {
			break
		}
		c := byPath[p]
		if c == nil {
			return nil, fmt.Errorf("explain: diff report: cause %s is not among the changed derivations", cr.Path)
		}
		for _, ch := range cr.Changes {
			x := Change{What: ch.Attribute, Status: ch.Status}
			if ch.Old != nil {
				x.Old = *ch.Old
			}
			if ch.New != nil {
				x.New = *ch.New
			}
			for _, e := range ch.Edits {
				x.Edits = append(x.Edits, Edit{Op: e.Op, Text: e.Text})
			}
			c.Own = append(c.Own, x)
		}
		r.Roots = append(r.Roots, RootCause{Changed: c, Explains: cr.Explains})
	}
	if err != nil {
		return nil, fmt.Errorf("explain: diff report: %w", err)
	}
	if len(r.Changed) != rep.ChangedCount || len(r.Gone) != rep.GoneCount {
		return nil, fmt.Errorf("explain: diff report: counts %d and %d, but %d changed and %d gone listed",
			rep.ChangedCount, rep.GoneCount, len(r.Changed), len(r.Gone))
	}
	return r, nil
}

func pathStrings(ps []store.Path) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// WriteDiffJSON writes r as an indented DiffReport.
func WriteDiffJSON(w io.Writer, r *DiffResult) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r.Report())
}

// ReadDiffJSON reads what WriteDiffJSON wrote.
func ReadDiffJSON(rd io.Reader) (*DiffResult, error) {
	var rep DiffReport
	if err := json.NewDecoder(rd).Decode(&rep); err != nil {
		return nil, fmt.Errorf("explain: diff report: %w", err)
	}
	return rep.Result()
}

// WriteDiffText writes r for a reader: the counts, then each root cause
// with the changed part of each attribute (a word or line diff with a
// little context, removed text in [-…-], inserted text in {+…+}).
func WriteDiffText(w io.Writer, r *DiffResult) error {
	bw := bufio.NewWriter(w)
	if len(r.Changed) == 0 && len(r.Gone) == 0 {
		fmt.Fprintln(bw, "the two plans are identical: nothing rebuilds")
		return bw.Flush()
	}
	fmt.Fprintf(bw, "%d derivation(s) rebuild because of these %d change(s):\n", len(r.Changed), len(r.Roots))
	fmt.Fprintf(bw, "(%d derivation(s) of the new closure are not in the old one, %d of the old one are not in the new one)\n",
		len(r.Changed), len(r.Gone))
	for _, rc := range r.Roots {
		fmt.Fprintln(bw)
		if rc.Old.IsZero() {
			fmt.Fprintf(bw, "%s (new, explains %d)\n", rc.New, rc.Explains)
			continue
		}
		fmt.Fprintf(bw, "%s (was %s, explains %d)\n", rc.New, rc.Old.Name(), rc.Explains)
		for _, c := range rc.Own {
			writeChange(bw, c)
		}
	}
	return bw.Flush()
}

// Context shown around a change: words of a word diff, lines of a line
// diff.
const (
	contextWords = 4
	contextLines = 2
	shortValue   = 80
)

func writeChange(w *bufio.Writer, c Change) {
	switch c.Status {
	case "added":
		fmt.Fprintf(w, "  %s: added %s\n", c.What, quoteShort(c.New))
		return
	case "removed":
		fmt.Fprintf(w, "  %s: removed (was %s)\n", c.What, quoteShort(c.Old))
		return
	}
	lines := strings.Contains(c.Old, "\n") || strings.Contains(c.New, "\n")
	if !lines && len(c.Old) <= shortValue && len(c.New) <= shortValue &&
		!strings.ContainsAny(c.Old, " \t") && !strings.ContainsAny(c.New, " \t") {
		fmt.Fprintf(w, "  %s: %q -> %q\n", c.What, c.Old, c.New)
		return
	}
	if !lines {
		fmt.Fprintf(w, "  %s: %s\n", c.What, wordDiff(c.Edits))
		return
	}
	fmt.Fprintf(w, "  %s:\n", c.What)
	writeLineDiff(w, c.Edits)
}

// wordDiff renders edits on one line, unchanged runs cut to a few words
// around each change.
func wordDiff(es []Edit) string {
	var b strings.Builder
	for i, e := range es {
		switch e.Op {
		case "=":
			ws := splitWords(e.Text)
			first, last := i == 0, i == len(es)-1
			switch {
			case first && len(ws) > contextWords:
				b.WriteString("…")
				b.WriteString(strings.Join(ws[len(ws)-contextWords:], ""))
			case last && len(ws) > contextWords:
				b.WriteString(strings.Join(ws[:contextWords], ""))
				b.WriteString(" …")
			case !first && !last && len(ws) > 2*contextWords:
				b.WriteString(strings.Join(ws[:contextWords], ""))
				b.WriteString(" …")
				b.WriteString(strings.Join(ws[len(ws)-contextWords:], ""))
			default:
				b.WriteString(e.Text)
			}
		case "-", "+":
			t := strings.TrimLeft(e.Text, " \t")
			b.WriteString(e.Text[:len(e.Text)-len(t)])
			if e.Op == "-" {
				b.WriteString("[-" + t + "-]")
			} else {
				b.WriteString("{+" + t + "+}")
			}
		}
	}
	return b.String()
}

// writeLineDiff writes edits one line each, "- " removed, "+ " inserted,
// with a few unchanged lines of context around each change.
func writeLineDiff(w *bufio.Writer, es []Edit) {
	const indent = "    "
	line := func(mark, s string) {
		fmt.Fprintf(w, "%s%s %s\n", indent, mark, strings.TrimSuffix(s, "\n"))
	}
	for i, e := range es {
		ls := splitLines(e.Text)
		if e.Op != "=" {
			for _, l := range ls {
				line(e.Op, l)
			}
			continue
		}
		first, last := i == 0, i == len(es)-1
		head, tail := contextLines, contextLines
		if first {
			head = 0
		}
		if last {
			tail = 0
		}
		if head+tail >= len(ls) {
			for _, l := range ls {
				line(" ", l)
			}
			continue
		}
		for _, l := range ls[:head] {
			line(" ", l)
		}
		fmt.Fprintf(w, "%s  … (%d unchanged lines)\n", indent, len(ls)-head-tail)
		for _, l := range ls[len(ls)-tail:] {
			line(" ", l)
		}
	}
}

// quoteShort quotes s, eliding the middle of long values: for values
// shown whole (added or removed), not for changes.
func quoteShort(s string) string {
	const max = 120
	if len(s) > max {
		s = s[:max/2] + "…" + s[len(s)-max/2:]
	}
	return fmt.Sprintf("%q", s)
}
