package ssh

import (
	"strings"
	"testing"
)

func TestTailBuffer(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{"under the limit", 100, []string{"a\n", "b\n"}, "a\nb\n"},
		{"over: starts at a line", 10, []string{"line one\n", "line two\n", "end\n"}, "…end\n"},
		{"over many times", 8, []string{strings.Repeat("x\n", 1000), "last\n"}, "…x\nlast\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newTailBuffer(tt.max)
			for _, w := range tt.writes {
				b.Write([]byte(w))
			}
			if got := b.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if len(b.buf) > 2*tt.max {
				t.Errorf("kept %d bytes, bound %d", len(b.buf), 2*tt.max)
			}
		})
	}
}
