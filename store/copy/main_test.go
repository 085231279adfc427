package copy_test

import (
	"context"
	"os"
	"testing"

	"github.com/nbuild/nbuild/store/copy"
)

// TestMain lets the test binary serve as the remote nbuild of a delta
// copy: ToHost sends this program to the test host and runs it there as
// `__copy-receive`, as nbuild does with itself.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == copy.ReceiveCommand {
		os.Exit(copy.ReceiveMain(context.Background(), os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
