package explain

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteWhyJSON writes r as `nbuild graph --why --format json` prints it:
//
//	{"target": PATH, "output": NAME (or ""), "total": N,
//	 "chains": [[{"path": PATH, "via": [NAME...] (absent for a root)}...]...]}
func WriteWhyJSON(w io.Writer, r *WhyResult) error {
	type stepJSON struct {
		Path string   `json:"path"`
		Via  []string `json:"via,omitempty"`
	}
	var chains [][]stepJSON
	for _, c := range r.Chains {
		var cj []stepJSON
		for _, s := range c {
			cj = append(cj, stepJSON{Path: s.Path.String(), Via: s.Via})
		}
		chains = append(chains, cj)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"target": r.Target.String(), "output": r.Output, "total": r.Total, "chains": chains})
}

// WriteWhyText writes r as `nbuild graph --why` prints it: how many
// shortest chains lead to the target and how long they are, then each
// chain as a tree from its root, one step a line ("└─ uses out of
// PATH", "└─ has source PATH").
func WriteWhyText(w io.Writer, r *WhyResult) error {
	what := r.Target.String()
	if r.Output != "" {
		what += fmt.Sprintf(" (output %q of the last derivation)", r.Output)
	}
	steps := len(r.Chains[0]) - 1
	fmt.Fprintf(w, "%s is in the closure through %d shortest chain(s) of %d step(s)", what, r.Total, steps)
	if uint64(len(r.Chains)) < r.Total {
		fmt.Fprintf(w, "; showing %d", len(r.Chains))
	}
	fmt.Fprintln(w, ":")
	for i, c := range r.Chains {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "chain %d:\n", i+1)
		for j, s := range c {
			if j == 0 {
				fmt.Fprintf(w, "  %s\n", s.Path)
				continue
			}
			via := "uses " + strings.Join(s.Via, ",") + " of"
			if len(s.Via) == 1 && s.Via[0] == "source" {
				via = "has source"
			}
			_, err := fmt.Fprintf(w, "  %s└─ %s %s\n", strings.Repeat("   ", j-1), via, s.Path)
			if err != nil {
				return err
			}
		}
	}
	return nil
}
