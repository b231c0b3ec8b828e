package e2e

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/virtap/virtap/test/harness"
)

// TestVirtapStatusDuringDestroy: `virtap status` running while libvirt
// destroys a virtap guest must not stall the destroy's hooks. status keeps
// the state store's flock while it asks libvirt for the domains; the
// release hook then waits for the flock inside libvirt's destroy job, and
// listing domains waits for that job, until the hook's lock timeout. The
// destroy must stay quick and the release must remove the guest's record.
func TestVirtapStatusDuringDestroy(t *testing.T) {
	v := needVirtap(t)
	env := harness.Setup(t)
	t.Parallel()
	topo := harness.NewTopology(t, 1, false)
	w := harness.NewVirtapWiring(v)
	g := vguest(t, env, w, topo, "a", w.Interface(t, topo, 0, "bridge", ""), harness.GuestIP(0), 2, harness.ExtIP)
	g.Start()
	waitPing(g, harness.ExtIP)
	w.CheckRunning(t, topo)

	var stop atomic.Bool
	var wg sync.WaitGroup
	var runs atomic.Int64
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				// Not v.Status(): that one runs alone to keep the other
				// scenarios clear of this very stall.
				_, _, _ = v.Run(nil, "status", "--json")
				runs.Add(1)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	err := g.Destroy()
	took := time.Since(start)
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("destroy with %d concurrent status runs took %s", runs.Load(), took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("destroy took %s while virtap status ran: the release hook waited for status's state lock", took.Round(time.Millisecond))
	}
	w.CheckGone(t, topo)
}
