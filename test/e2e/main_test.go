// Package e2e holds the end-to-end scenarios: real libvirtd, TCG guests,
// network namespaces as the switch and the external host. They run as root
// (skip otherwise, except under CI=true where they fail).
package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/virtap/virtap/test/harness"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := harness.Teardown(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e teardown: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
