package sched

import (
	"bufio"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"
)

// Timeline records what ran where and when. Times are offsets from the
// start of the run.
type Timeline struct {
	Policy     string            `json:"policy"`
	Machines   []TimelineMachine `json:"machines"`
	Entries    []Entry           `json:"entries"`
	Makespan   time.Duration     `json:"-"`
	LowerBound time.Duration     `json:"-"`
}

// TimelineMachine is a machine as the timeline shows it: one row per slot.
type TimelineMachine struct {
	Name        string `json:"name"`
	Slots       int    `json:"slots"`
	SpeedFactor uint   `json:"speedFactor"`
}

// Entry is one build attempt on one machine slot.
type Entry struct {
	Job     int           `json:"job"`
	Name    string        `json:"name"`
	System  string        `json:"system"`
	Machine int           `json:"machine"`
	Slot    int           `json:"slot"`
	Start   time.Duration `json:"-"`
	End     time.Duration `json:"-"`
	Outcome string        `json:"outcome"`
}

func newTimeline(plan *Plan, p Policy) *Timeline {
	// An entry per job, more only for retries: sized up front (appending
	// 3,500 entries allocated 1 MB of a warm `nbuild graph`'s 7).
	tl := &Timeline{Policy: p.String(), Entries: make([]Entry, 0, len(plan.Jobs))}
	for i := range plan.Machines {
		m := &plan.Machines[i]
		tl.Machines = append(tl.Machines, TimelineMachine{Name: m.Name(), Slots: int(m.MaxJobs), SpeedFactor: m.SpeedFactor})
	}
	return tl
}

func (tl *Timeline) add(plan *Plan, job, machine, slot int, start, end time.Duration, o Outcome) {
	tl.Entries = append(tl.Entries, Entry{Job: job, Name: plan.Jobs[job].Name, System: plan.Jobs[job].Platform.System(),
		Machine: machine, Slot: slot, Start: start, End: end, Outcome: o.String()})
	tl.Makespan = max(tl.Makespan, end)
}

// WriteJSON writes the timeline as one JSON object; times are seconds.
func (tl *Timeline) WriteJSON(w io.Writer) error {
	type entry struct {
		Entry
		Start float64 `json:"start"`
		End   float64 `json:"end"`
	}
	out := struct {
		*Timeline
		Makespan   float64 `json:"makespan"`
		LowerBound float64 `json:"lowerBound,omitempty"`
		Entries    []entry `json:"entries"`
	}{Timeline: tl, Makespan: tl.Makespan.Seconds(), LowerBound: tl.LowerBound.Seconds()}
	out.Entries = make([]entry, len(tl.Entries))
	for i, e := range tl.Entries {
		out.Entries[i] = entry{Entry: e, Start: e.Start.Seconds(), End: e.End.Seconds()}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(out)
}

// tickStep is a round interval giving 5 to 12 ticks over span.
func tickStep(span time.Duration) time.Duration {
	steps := []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond, time.Second, 2 * time.Second,
		5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute,
		15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour}
	for _, s := range steps {
		if span/s <= 12 {
			return s
		}
	}
	return span / 10
}

// palette colours systems in order of first appearance.
var palette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"}

// WriteSVG draws the timeline as a Gantt chart: one row per machine slot,
// one bar per build coloured by system (failed builds outlined in red,
// lost ones hatched grey), a time axis and a legend.
func (tl *Timeline) WriteSVG(w io.Writer) error {
	const (
		left, top, rowH, width = 220.0, 30.0, 16.0, 1000.0
	)
	type row struct{ machine, slot int }
	rowOf := map[row]int{}
	var labels []string
	for m, tm := range tl.Machines {
		for s := 0; s < tm.Slots; s++ {
			rowOf[row{m, s}] = len(labels)
			labels = append(labels, fmt.Sprintf("%s #%d", tm.Name, s))
		}
	}
	colour := map[string]string{}
	var systems []string
	for _, e := range tl.Entries {
		if _, ok := colour[e.System]; !ok {
			colour[e.System] = palette[len(systems)%len(palette)]
			systems = append(systems, e.System)
		}
	}
	span := tl.Makespan.Seconds()
	if span <= 0 {
		span = 1
	}
	x := func(d time.Duration) float64 { return left + d.Seconds()/span*width }
	height := top + float64(len(labels))*rowH + 60 + 18*float64((len(systems)+3)/4)
	bw := bufio.NewWriter(w)
	esc := func(s string) string {
		var b strings.Builder
		_ = xml.EscapeText(&b, []byte(s))
		return b.String()
	}
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", left+width+60, height)
	fmt.Fprintf(bw, `<defs><pattern id="lost" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="3" height="6" fill="#999"/></pattern></defs>`+"\n")
	fmt.Fprintf(bw, `<text x="%.0f" y="18" font-size="13">%s policy: makespan %s`, left, esc(tl.Policy), tl.Makespan.Round(time.Second))
	if tl.LowerBound > 0 {
		fmt.Fprintf(bw, `, lower bound %s (%.3f×)`, tl.LowerBound.Round(time.Second), tl.Makespan.Seconds()/tl.LowerBound.Seconds())
	}
	fmt.Fprint(bw, "</text>\n")
	for i, l := range labels {
		y := top + float64(i)*rowH
		if i%2 == 0 {
			fmt.Fprintf(bw, `<rect x="%.0f" y="%.1f" width="%.0f" height="%.0f" fill="#f4f4f4"/>`+"\n", left, y, width, rowH)
		}
		fmt.Fprintf(bw, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+rowH-4, esc(l))
	}
	for _, e := range tl.Entries {
		r, ok := rowOf[row{e.Machine, e.Slot}]
		if !ok {
			continue
		}
		fill, stroke := colour[e.System], "none"
		switch e.Outcome {
		case Failed.String():
			stroke = "#d00"
		case MachineLost.String():
			fill = "url(#lost)"
		}
		fmt.Fprintf(bw, `<rect x="%.2f" y="%.1f" width="%.2f" height="%.0f" fill="%s" stroke="%s"><title>%s on %s: %s–%s (%s)</title></rect>`+"\n",
			x(e.Start), top+float64(r)*rowH+1, max(x(e.End)-x(e.Start), 0.5), rowH-2, fill, stroke,
			esc(e.Name), esc(tl.Machines[e.Machine].Name), e.Start.Round(time.Second), e.End.Round(time.Second), e.Outcome)
	}
	axisY := top + float64(len(labels))*rowH
	fmt.Fprintf(bw, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#000"/>`+"\n", left, axisY, left+width, axisY)
	step := tickStep(tl.Makespan)
	for d := time.Duration(0); d <= tl.Makespan; d += step {
		fmt.Fprintf(bw, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000"/><text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n",
			x(d), axisY, x(d), axisY+4, x(d), axisY+16, d)
	}
	for i, sys := range systems {
		lx := left + float64(i%4)*220
		ly := axisY + 34 + float64(i/4)*18
		fmt.Fprintf(bw, `<rect x="%.0f" y="%.0f" width="12" height="12" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`+"\n", lx, ly-10, colour[sys], lx+16, ly, esc(sys))
	}
	fmt.Fprint(bw, "</svg>\n")
	return bw.Flush()
}
