// Package e2e holds the end-to-end scenarios: real libvirtd, TCG guests,
// network namespaces as the switch and the external host. They run as root
// (skip otherwise, except under CI=true where they fail).
package e2e

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/virtap/virtap/test/harness"
)

func TestMain(m *testing.M) {
	// The scenarios mostly wait on TCG guests, not on CPU: run them all at
	// once unless -parallel was given (its default, GOMAXPROCS, is 2 here).
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", "4")
	}
	start := time.Now()
	code := m.Run()
	tests := time.Since(start)
	err := harness.Teardown()
	fmt.Fprintf(os.Stderr, "e2e: tests %s, teardown %s\n", tests.Round(time.Millisecond), (time.Since(start) - tests).Round(time.Millisecond))
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e teardown: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
