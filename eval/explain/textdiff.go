package explain

import (
	"strings"
)

// Edit is one run of an edit script from an old value to a new one.
type Edit struct {
	// Op is "=" for text in both values, "-" for text only in the old one,
	// "+" for text only in the new one.
	Op string
	// Text is the run's text. Joining the "=" and "+" runs gives the new
	// value; joining the "=" and "-" runs gives the old value up to the
	// store paths of matched derivations and, in a word diff, the spaces
	// between words (an "=" run is spelled as in the new value).
	Text string
}

// maxDiffCells bounds the longest-common-subsequence table of one value
// (tokens of the differing middle, old × new); past it the middle is shown
// as replaced whole.
const maxDiffCells = 1 << 22

// diffText is the edit script from old to new, by lines when either has a
// newline and by words otherwise, as nix-diff shows a changed string. Two
// tokens are equal when old's equals eq(new's): eq maps the new value's
// store paths to the old ones.
func diffText(old, new string, eq func(string) string) []Edit {
	lines := strings.Contains(old, "\n") || strings.Contains(new, "\n")
	split, key := splitWords, strings.TrimLeft
	if lines {
		split, key = splitLines, func(s, _ string) string { return s }
	}
	ot, nt := split(old), split(new)
	ok := make([]string, len(ot))
	for i, t := range ot {
		ok[i] = key(t, " \t")
	}
	nk := make([]string, len(nt))
	for i, t := range nt {
		nk[i] = key(eq(t), " \t")
	}
	// Common prefix and suffix, then the middle by LCS.
	pre := 0
	for pre < len(ok) && pre < len(nk) && ok[pre] == nk[pre] {
		pre++
	}
	suf := 0
	for suf < len(ok)-pre && suf < len(nk)-pre && ok[len(ok)-1-suf] == nk[len(nk)-1-suf] {
		suf++
	}
	var es editList
	for _, t := range nt[:pre] {
		es.add("=", t)
	}
	om, nm := ok[pre:len(ok)-suf], nk[pre:len(nk)-suf]
	ott, ntt := ot[pre:len(ot)-suf], nt[pre:len(nt)-suf]
	if len(om)*len(nm) > maxDiffCells {
		for _, t := range ott {
			es.add("-", t)
		}
		for _, t := range ntt {
			es.add("+", t)
		}
	} else {
		lcsEdits(&es, om, nm, ott, ntt)
	}
	for _, t := range nt[len(nt)-suf:] {
		es.add("=", t)
	}
	changes := false
	for _, e := range es {
		changes = changes || e.Op != "="
	}
	if !changes { // equal up to spaces between words
		return []Edit{{Op: "-", Text: old}, {Op: "+", Text: new}}
	}
	return es
}

// lcsEdits appends the edits of a longest common subsequence of keys ok and
// nk, whose texts are ot and nt.
func lcsEdits(es *editList, ok, nk, ot, nt []string) {
	n, m := len(ok), len(nk)
	// l[i*(m+1)+j] is the LCS length of ok[i:] and nk[j:].
	l := make([]int32, (n+1)*(m+1))
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			switch {
			case ok[i] == nk[j]:
				l[i*(m+1)+j] = l[(i+1)*(m+1)+j+1] + 1
			case l[(i+1)*(m+1)+j] >= l[i*(m+1)+j+1]:
				l[i*(m+1)+j] = l[(i+1)*(m+1)+j]
			default:
				l[i*(m+1)+j] = l[i*(m+1)+j+1]
			}
		}
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && ok[i] == nk[j]:
			es.add("=", nt[j])
			i, j = i+1, j+1
		case j == m || i < n && l[(i+1)*(m+1)+j] >= l[i*(m+1)+j+1]:
			es.add("-", ot[i])
			i++
		default:
			es.add("+", nt[j])
			j++
		}
	}
}

// editList merges consecutive runs of one kind.
type editList []Edit

func (es *editList) add(op, text string) {
	if k := len(*es); k > 0 && (*es)[k-1].Op == op {
		(*es)[k-1].Text += text
		return
	}
	*es = append(*es, Edit{Op: op, Text: text})
}

// splitLines splits s after each newline.
func splitLines(s string) []string {
	out := strings.SplitAfter(s, "\n")
	if out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// splitWords splits s into words, each with the spaces before it; spaces
// at the end are a token of their own.
func splitWords(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		for i < len(s) && s[i] != ' ' && s[i] != '\t' {
			i++
		}
		out = append(out, s[start:i])
		start = i
	}
	return out
}
