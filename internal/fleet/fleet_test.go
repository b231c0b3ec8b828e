package fleet_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtap/virtap/internal/fleet"
	"github.com/virtap/virtap/internal/fleet/etcdtest"
	"github.com/virtap/virtap/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var (
	pool  = netip.MustParsePrefix("192.0.2.0/24")
	first = netip.MustParseAddr("192.0.2.10")
	last  = netip.MustParseAddr("192.0.2.200")
)

func open(t *testing.T, eps []string, host string, timeout time.Duration) *fleet.Client {
	t.Helper()
	c, err := fleet.Open(fleet.Config{Endpoints: eps, Host: host, Prefix: "/test-" + strings.ReplaceAll(t.Name(), "/", "_") + "/", Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func holder(host, dom int) store.Holder {
	return store.Holder{UUID: fmt.Sprintf("00000000-0000-4000-8000-%06d%06d", host, dom), MAC: fmt.Sprintf("52:54:00:%02x:00:%02x", host, dom), Name: fmt.Sprintf("g%d-%d", host, dom)}
}

// raw reads every key under the client's prefix straight from etcd.
func raw(t *testing.T, eps []string, prefix string) map[string]string {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := contextTimeout()
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), prefix)] = string(kv.Value)
	}
	return out
}

// Three hosts lease 30 addresses each at once from one pool: all 90 are
// distinct, each is recorded once, and asking again gives the same address.
func TestConcurrentHostsLeaseDistinct(t *testing.T) {
	srv := etcdtest.New(t)
	eps := []string{srv.Client}
	var hosts []*fleet.Client
	for h := range 3 {
		hosts = append(hosts, open(t, eps, fmt.Sprintf("host%d", h), 10*time.Second))
	}
	got := make([][]netip.Addr, 3)
	var wg sync.WaitGroup
	errs := make(chan error, 90)
	for h, c := range hosts {
		got[h] = make([]netip.Addr, 30)
		for d := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a, err := c.Lease("lan", pool, first, last, nil, holder(h, d))
				if err != nil {
					errs <- err
				}
				got[h][d] = a
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[netip.Addr]string{}
	for h := range got {
		for d, a := range got[h] {
			who := fmt.Sprintf("host%d/dom%d", h, d)
			if other, dup := seen[a]; dup {
				t.Fatalf("%s and %s both got %s", who, other, a)
			}
			if a.Compare(first) < 0 || a.Compare(last) > 0 {
				t.Fatalf("%s got %s outside the range", who, a)
			}
			seen[a] = who
		}
	}
	recs, err := hosts[0].Records("lan")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 90 {
		t.Fatalf("etcd holds %d leases, want 90", len(recs))
	}
	for _, r := range recs {
		h, d := 0, 0
		fmt.Sscanf(r.Holder.Name, "g%d-%d", &h, &d)
		if got[h][d] != r.Addr || r.Host != fmt.Sprintf("host%d", h) {
			t.Fatalf("record %+v disagrees with what host%d was given (%s)", r, h, got[h][d])
		}
	}
	// The same domain asks again from another host: the same address.
	a, err := hosts[2].Lease("lan", pool, first, last, nil, holder(0, 7))
	if err != nil || a != got[0][7] {
		t.Fatalf("lease again from host2 = %s, %v; want %s", a, err, got[0][7])
	}
}

// One domain leased from two hosts at once gets one address, and the lease
// is freed only when both hosts let go of the domain.
func TestOneDomainTwoHostsOneAddress(t *testing.T) {
	srv := etcdtest.New(t)
	eps := []string{srv.Client}
	h1, h2 := open(t, eps, "h1", 5*time.Second), open(t, eps, "h2", 5*time.Second)
	dom := holder(9, 9)
	for round := range 5 {
		var a1, a2 netip.Addr
		var e1, e2 error
		var wg sync.WaitGroup
		wg.Add(2)
		d := dom
		d.UUID = fmt.Sprintf("00000000-0000-4000-8000-0000000000%02d", round)
		go func() { defer wg.Done(); a1, e1 = h1.Lease("lan", pool, first, last, nil, d) }()
		go func() { defer wg.Done(); a2, e2 = h2.Lease("lan", pool, first, last, nil, d) }()
		wg.Wait()
		if e1 != nil || e2 != nil || a1 != a2 {
			t.Fatalf("round %d: h1 got %s (%v), h2 got %s (%v); want one address", round, a1, e1, a2, e2)
		}
		hosts, err := h1.DomainHosts(d.UUID)
		if err != nil || strings.Join(hosts, ",") != "h1,h2" {
			t.Fatalf("round %d: hosts of the domain = %v, %v; want h1,h2", round, hosts, err)
		}
	}
	ls, _ := h1.Leases("lan")
	if len(ls) != 5 {
		t.Fatalf("%d leases for 5 domains: %+v", len(ls), ls)
	}
	u := "00000000-0000-4000-8000-000000000000"
	freed, err := h1.ReleaseLeases(u)
	if err != nil || len(freed) != 0 {
		t.Fatalf("h1 let go while h2 has the domain: freed %v, %v; want nothing freed", freed, err)
	}
	if ls, _ := h2.Leases("lan"); len(ls) != 5 {
		t.Fatalf("a lease of a domain h2 still has was freed: %d left", len(ls))
	}
	freed, err = h2.ReleaseLeases(u)
	if err != nil || len(freed) != 1 || freed[0].Holder.UUID != u {
		t.Fatalf("h2 let go last: freed %v, %v; want its one lease", freed, err)
	}
	if ls, _ := h2.Leases("lan"); len(ls) != 4 {
		t.Fatalf("%d leases left, want 4", len(ls))
	}
	if hosts, _ := h1.DomainHosts(u); len(hosts) != 0 {
		t.Fatalf("freed domain still has hosts %v", hosts)
	}
}

// A full pool gives a clear error, and the holders of the pool keep their
// addresses; a lease is given back when the range moves away from it.
func TestFullPoolAndMovedRange(t *testing.T) {
	srv := etcdtest.New(t)
	c := open(t, []string{srv.Client}, "h1", 5*time.Second)
	lo, hi := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.12")
	excl := []netip.Addr{netip.MustParseAddr("192.0.2.11")}
	var got []netip.Addr
	for d := range 2 {
		a, err := c.Lease("small", pool, lo, hi, excl, holder(1, d))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a)
	}
	if got[0].String() != "192.0.2.10" || got[1].String() != "192.0.2.12" {
		t.Fatalf("leases %v, want .10 and .12 (.11 excluded)", got)
	}
	_, err := c.Lease("small", pool, lo, hi, excl, holder(1, 2))
	var ex *store.AddressesExhaustedError
	if !errors.As(err, &ex) || !strings.Contains(err.Error(), `network "small": no free address in 192.0.2.10-192.0.2.12`) ||
		!strings.Contains(err.Error(), "2 leased, 1 excluded") {
		t.Fatalf("full pool: %v; want a no-free-address error naming the network", err)
	}
	// The range moves: the holder gets an address in the new range and
	// the old one is free again.
	a, err := c.Lease("small", pool, netip.MustParseAddr("192.0.2.50"), netip.MustParseAddr("192.0.2.60"), nil, holder(1, 0))
	if err != nil || a.String() != "192.0.2.50" {
		t.Fatalf("moved range: %s, %v; want 192.0.2.50", a, err)
	}
	ls, _ := c.Leases("small")
	if len(ls) != 2 || ls[0].Addr.String() != "192.0.2.12" || ls[1].Addr.String() != "192.0.2.50" {
		t.Fatalf("leases after the move: %+v", ls)
	}
	if nws, err := c.LeaseNetworks(); err != nil || strings.Join(nws, ",") != "small" {
		t.Fatalf("networks %v, %v", nws, err)
	}
}

// With etcd down a new lease fails within the bounded timeout, names etcd
// and its endpoint, and writes nothing.
func TestEtcdDownWritesNothing(t *testing.T) {
	srv := etcdtest.New(t)
	eps := []string{srv.Client}
	c := open(t, eps, "h1", 1500*time.Millisecond)
	before, err := c.Lease("lan", pool, first, last, nil, holder(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	prefix := c.Prefix()
	keys := raw(t, eps, prefix)
	srv.Stop()
	for _, fresh := range []bool{false, true} {
		cl := c
		if fresh {
			cl = open(t, eps, "h2", 1500*time.Millisecond)
		}
		start := time.Now()
		_, err = cl.Lease("lan", pool, first, last, nil, holder(2, 2))
		took := time.Since(start)
		var ue *fleet.UnavailableError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "etcd at "+srv.Client) {
			t.Fatalf("fresh client %v: lease with etcd down: %v; want an error naming etcd and %s", fresh, err, srv.Client)
		}
		if took > 3*time.Second {
			t.Fatalf("lease with etcd down took %s; the timeout is 1.5s", took)
		}
		t.Logf("etcd down (fresh client %v): %s after %s", fresh, err, took.Round(time.Millisecond))
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Wait(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	after := raw(t, eps, prefix)
	if fmt.Sprint(after) != fmt.Sprint(keys) {
		t.Fatalf("etcd changed while down:\nbefore %v\nafter  %v", keys, after)
	}
	if again, err := c.Lease("lan", pool, first, last, nil, holder(1, 1)); err != nil || again != before {
		t.Fatalf("after etcd came back: %s, %v; want %s", again, err, before)
	}
}

// A 3-member cluster loses its leader while three hosts lease: every lease
// succeeds and all addresses stay distinct.
func TestClusterLosesMember(t *testing.T) {
	cl := etcdtest.NewCluster(t, 3)
	eps := cl.Endpoints()
	var hosts []*fleet.Client
	for h := range 3 {
		hosts = append(hosts, open(t, eps, fmt.Sprintf("host%d", h), 10*time.Second))
	}
	const per = 30
	got := make([][]netip.Addr, 3)
	killed := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for h, c := range hosts {
		got[h] = make([]netip.Addr, per)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range per {
				if h == 0 && d == per/3 {
					once.Do(func() { killLeader(t, hosts[0], cl); close(killed) })
				}
				a, err := c.Lease("lan", pool, first, last, nil, holder(h, d))
				if err != nil {
					errs <- fmt.Errorf("host%d lease %d: %w", h, d, err)
					return
				}
				got[h][d] = a
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	<-killed
	seen := map[netip.Addr]bool{}
	for h := range got {
		for _, a := range got[h] {
			if seen[a] {
				t.Fatalf("%s leased twice", a)
			}
			seen[a] = true
		}
	}
	ls, err := hosts[1].Leases("lan")
	if err != nil || len(ls) != 3*per {
		t.Fatalf("%d leases after losing a member (%v), want %d", len(ls), err, 3*per)
	}
	st, ok := hosts[1].Health()
	down := 0
	for _, s := range st {
		if s.Error != "" {
			down++
		}
	}
	if !ok || down != 1 {
		t.Fatalf("health after losing one member: ok=%v %+v", ok, st)
	}
}

func killLeader(t *testing.T, c *fleet.Client, cl *etcdtest.Cluster) {
	st, _ := c.Health()
	for i, s := range st {
		if s.Leader {
			t.Logf("killing leader %s (pid %d)", s.Endpoint, cl.Members[i].Pid())
			cl.Members[i].Kill()
			return
		}
	}
	t.Logf("no leader found; killing member 0")
	cl.Members[0].Kill()
}
