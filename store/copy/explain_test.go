package copy

import (
	"errors"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store/daemon"
)

// TestExplainNotTrusted checks the wording alone, on the message Nix 2.8's
// LocalStore::addToStore sends; TestToHostNotTrusted meets the real
// refusal as a user the test host's daemon does not trust.
func TestExplainNotTrusted(t *testing.T) {
	refusal := &daemon.Error{Message: "cannot add path '/nix/store/00000000000000000000000000000000-x' because it lacks a valid signature"}
	err := explain("alice@board", nil, refusal, false)
	if !errors.Is(err, ErrNotTrusted) {
		t.Fatalf("not ErrNotTrusted: %v", err)
	}
	for _, want := range []string{"trusted-users on alice@board", "lacks a valid signature", "trusted-public-keys"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}
