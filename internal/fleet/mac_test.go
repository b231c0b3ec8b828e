package fleet_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/virtap/virtap/internal/fleet"
	"github.com/virtap/virtap/internal/fleet/etcdtest"
)

func contextTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

// A MAC derived on one host for one domain is refused to another domain on
// another host, which steps past it; freeing the first domain frees it.
func TestMACRegistryCatchesCollision(t *testing.T) {
	srv := etcdtest.New(t)
	eps := []string{srv.Client}
	h1, h2 := open(t, eps, "h1", 5*time.Second), open(t, eps, "h2", 5*time.Second)
	d1, d2 := holder(1, 1), holder(2, 2)
	const m = "52:54:00:aa:bb:cc"
	if err := h1.ClaimMAC(m, d1); err != nil {
		t.Fatal(err)
	}
	if err := h2.ClaimMAC(strings.ToUpper(m), d1); err != nil {
		t.Fatalf("the owner claiming its MAC from another host: %v", err)
	}
	err := h2.ClaimMAC(m, d2)
	var taken *fleet.MACTakenError
	if !errors.As(err, &taken) || taken.Owner.Holder.UUID != d1.UUID || !strings.Contains(err.Error(), m) {
		t.Fatalf("collision: %v; want a MACTakenError naming %s and its owner", err, m)
	}
	cands := []string{m, "52:54:00:aa:bb:cd"}
	got, err := h2.ClaimFreeMAC(d2, len(cands), func(i int) string { return cands[i] })
	if err != nil || got != cands[1] {
		t.Fatalf("ClaimFreeMAC = %s, %v; want %s", got, err, cands[1])
	}
	if _, err := h2.ClaimFreeMAC(holder(3, 3), 2, func(i int) string { return cands[i] }); err == nil || !strings.Contains(err.Error(), "mac_prefix") {
		t.Fatalf("all candidates taken: %v; want an error that says what to change", err)
	}
	// d1 is released by both hosts that had it: its MAC is free again.
	for _, c := range []*fleet.Client{h1, h2} {
		if _, err := c.ReleaseLeases(d1.UUID); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, err := h1.MACOwner(m); err != nil || ok {
		t.Fatalf("MAC of a released domain still registered (%v)", err)
	}
	if err := h2.ClaimMAC(m, d2); err != nil {
		t.Fatalf("claiming a freed MAC: %v", err)
	}
	if r, ok, err := h1.MACOwner(cands[1]); err != nil || !ok || r.Holder.UUID != d2.UUID || r.Host != "h2" {
		t.Fatalf("owner of %s = %+v %v %v", cands[1], r, ok, err)
	}
}

// A fleet over TLS with client certificates: leases work with the right
// files, and a client without a certificate is refused with an etcd error.
func TestTLS(t *testing.T) {
	srv, files := etcdtest.NewTLS(t)
	eps := []string{srv.Client}
	c, err := fleet.Open(fleet.Config{Endpoints: eps, Host: "h1", CertFile: files.CertFile, KeyFile: files.KeyFile, CAFile: files.CAFile, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := c.Lease("lan", pool, first, last, nil, holder(1, 1))
	if err != nil || a != first {
		t.Fatalf("lease over TLS: %s, %v", a, err)
	}
	st, ok := c.Health()
	if !ok || st[0].Version == "" {
		t.Fatalf("health over TLS: %+v", st)
	}
	noCert, err := fleet.Open(fleet.Config{Endpoints: eps, Host: "h2", CAFile: files.CAFile, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer noCert.Close()
	_, err = noCert.Lease("lan", pool, first, last, nil, holder(2, 2))
	if err == nil || !strings.Contains(err.Error(), "etcd at "+srv.Client) {
		t.Fatalf("lease without a client certificate: %v; want refused, naming etcd", err)
	}
	if _, err := fleet.Open(fleet.Config{Endpoints: eps, CertFile: files.CertFile}); err == nil || !strings.Contains(err.Error(), "cert and key") {
		t.Fatalf("cert without key: %v", err)
	}
}

func TestOpenRejectsBadEndpoints(t *testing.T) {
	for _, eps := range [][]string{nil, {"etcd1:2379"}, {"ftp://x:1"}} {
		if _, err := fleet.Open(fleet.Config{Endpoints: eps}); err == nil {
			t.Errorf("Open(%v) succeeded", eps)
		}
	}
}
