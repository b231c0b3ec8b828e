package e2e

import (
	"testing"
	"time"

	"github.com/virtap/virtap/test/harness"
)

// The plain-libvirt versions: they prove the harness (daemons, guest image,
// topology) works without virtap. The virtap versions run the same
// scenarios with a Wiring that provisions <interface type='network'>.

func TestSmokePlainBridge(t *testing.T) {
	env := harness.Setup(t)
	t.Parallel()
	start := time.Now()
	scenarioBridge(t, env, harness.PlainDirect{})
	t.Logf("smoke (two guests, bridge mode, boot to teardown) took %s", time.Since(start).Round(time.Millisecond))
}

func TestPlainVEPAHairpin(t *testing.T) {
	env := harness.Setup(t)
	t.Parallel()
	scenarioVEPA(t, env, harness.PlainDirect{})
}

func TestPlainPrivate(t *testing.T) {
	env := harness.Setup(t)
	t.Parallel()
	scenarioPrivate(t, env, harness.PlainDirect{})
}
