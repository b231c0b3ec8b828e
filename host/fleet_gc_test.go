package host

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/virtap/virtap/internal/fleet"
	"github.com/virtap/virtap/internal/fleet/etcdtest"
	"github.com/virtap/virtap/internal/store"
)

// gc on one host lets go only of the domains that host had and no longer
// has; a lease is freed only when no other host has its domain, so gc
// never frees the address of a guest living on another host.
func TestGCFleetNeverFreesAnotherHostsGuest(t *testing.T) {
	srv := etcdtest.New(t)
	open := func(h string) *fleet.Client {
		c, err := fleet.Open(fleet.Config{Endpoints: []string{srv.Client}, Host: h, Prefix: "/gc/", Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	n1, n2 := open("node1"), open("node2")
	pool, _ := ParsePool("198.51.100.0/24", "198.51.100.10-198.51.100.99", "")
	onlyN1, both, onlyN2, kept := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	lease := func(c *fleet.Client, u uuid.UUID) netip.Addr {
		a, err := LeaseFor(c, "edge", pool, "", store.Holder{UUID: u.String(), MAC: "52:54:00:00:00:01"})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	lease(n1, onlyN1)
	bothAddr := lease(n1, both)
	if again := lease(n2, both); again != bothAddr {
		t.Fatalf("one domain, two hosts: %s and %s", bothAddr, again)
	}
	lease(n2, onlyN2)
	lease(n1, kept)
	r := &Realiser{}
	// node1's libvirt knows only "kept".
	defined := func(u uuid.UUID) bool { return u == kept }
	acts, err := r.GCFleet(n1, defined, true)
	if err != nil || len(acts) != 2 {
		t.Fatalf("dry run: %+v, %v; want two claims to let go", acts, err)
	}
	ls, _ := n1.Leases("edge")
	if len(ls) != 4 {
		t.Fatalf("a dry run freed leases: %d left", len(ls))
	}
	acts, err = r.GCFleet(n1, defined, false)
	if err != nil {
		t.Fatal(err)
	}
	var freed, claims []string
	for _, a := range acts {
		switch a.What {
		case "fleet lease":
			freed = append(freed, a.Domain)
		case "fleet claim":
			claims = append(claims, a.Domain+": "+a.Reason)
		}
	}
	if len(freed) != 1 || freed[0] != onlyN1.String() {
		t.Fatalf("freed %v; want only the lease of the domain no host has (%s); claims %v", freed, onlyN1, claims)
	}
	if !strings.Contains(strings.Join(claims, "\n"), both.String()+": its domain is no longer defined here; its leases stay with host node2") {
		t.Fatalf("claims %v", claims)
	}
	left := map[string]bool{}
	ls, _ = n2.Leases("edge")
	for _, l := range ls {
		left[l.Holder.UUID] = true
	}
	if len(ls) != 3 || !left[both.String()] || !left[onlyN2.String()] || !left[kept.String()] {
		t.Fatalf("leases left: %+v", ls)
	}
	// Without libvirt's answer (at boot) nothing is let go.
	if acts, err := r.GCFleet(n2, nil, false); err != nil || len(acts) != 0 {
		t.Fatalf("gc without knowing what is defined: %+v %v", acts, err)
	}
	// node2 no longer has "both" either: now it is freed.
	acts, err = r.GCFleet(n2, func(u uuid.UUID) bool { return u == onlyN2 }, false)
	if err != nil || len(acts) != 2 || acts[1].What != "fleet lease" || acts[1].Name != "edge/"+bothAddr.String() {
		t.Fatalf("last host lets go: %+v, %v", acts, err)
	}
}
