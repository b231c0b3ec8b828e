package doctor

import (
	"strings"
	"testing"
	"time"

	"github.com/virtap/virtap/internal/fleet"
	"github.com/virtap/virtap/internal/fleet/etcdtest"
)

// The fleet check against a real 3-member etcd: ok with all members, warn
// with one lost (the cluster still leases), fail with none.
func TestFleetCheck(t *testing.T) {
	cl := etcdtest.NewCluster(t, 3)
	c, err := fleet.Open(fleet.Config{Endpoints: cl.Endpoints(), Host: "h", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	check := func() Result {
		rep := &Report{}
		r := newRun(&Env{Fleet: c.Health}, rep)
		r.fleetCheck()
		if len(rep.Results) != 1 {
			t.Fatalf("results %+v", rep.Results)
		}
		return rep.Results[0]
	}
	if r := check(); r.Status != OK || !strings.Contains(r.Detail, "every member answers") {
		t.Fatalf("all up: %+v", r)
	}
	cl.Members[2].Kill()
	if r := check(); r.Status != Warn || !strings.Contains(r.Detail, cl.Members[2].Client+" do not answer") {
		t.Fatalf("one down: %+v", r)
	}
	cl.Members[0].Kill()
	cl.Members[1].Kill()
	if r := check(); r.Status != Fail || !strings.Contains(r.Detail, "no etcd member answers") || !strings.Contains(r.Advice, "already provisioned ones still start") {
		t.Fatalf("all down: %+v", r)
	}
}
