package passthrough

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/virtap/virtap/internal/store"
)

func TestDiscover(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.pf("enp3s0f0", 12, func(i int) string {
		if i == 2 {
			return "" // bound to vfio-pci: no netdev
		}
		return fmt.Sprintf("enp3s0f0v%d", i)
	})
	fs.plain("eth9")
	vfs, err := Discover(fs.root, "enp3s0f0")
	if err != nil {
		t.Fatal(err)
	}
	if len(vfs) != 12 {
		t.Fatalf("got %d vfs", len(vfs))
	}
	for i, v := range vfs {
		if v.Index != i || v.PF != "enp3s0f0" {
			t.Fatalf("vf %d: %+v (not sorted numerically?)", i, v)
		}
	}
	if vfs[10].PCI != "0000:01:02.2" || vfs[10].Netdev != "enp3s0f0v10" || vfs[10].Key() != "0000:01:02.2" {
		t.Fatalf("vf 10: %+v", vfs[10])
	}
	if vfs[2].Netdev != "" || vfs[2].PCI == "" {
		t.Fatalf("vfio vf: %+v", vfs[2])
	}
	for _, bad := range []string{"../../etc", "", "a/b", "waytoolongname0123"} {
		if _, err := Discover(fs.root, bad); err == nil || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("Discover(%q): %v", bad, err)
		}
	}
	if _, err := Discover(fs.root, "nope0"); err == nil || !strings.Contains(err.Error(), "no such") {
		t.Errorf("missing pf: %v", err)
	}
	if _, err := Discover(fs.root, "eth9"); err == nil || !strings.Contains(err.Error(), "no virtual functions") {
		t.Errorf("pf without vfs: %v", err)
	}
}

func TestDiscoverDevices(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.pf("pf0", 3, func(i int) string { return fmt.Sprintf("pf0v%d", i) })
	fs.plain("veth7")
	got, err := DiscoverDevices(fs.root, []string{"pf0v1", "veth7"})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].PF != "pf0" || got[0].Index != 1 || got[0].PCI != "0000:01:01.1" || got[0].Netdev != "pf0v1" {
		t.Fatalf("vf member: %+v", got[0])
	}
	if got[1].PF != "" || got[1].Index != -1 || got[1].PCI != "" || got[1].Key() != "veth7" {
		t.Fatalf("plain member: %+v", got[1])
	}
	for _, bad := range [][]string{{"missing0"}, {"../pf0"}, {"veth7", "veth7"}} {
		if _, err := DiscoverDevices(fs.root, bad); err == nil {
			t.Errorf("DiscoverDevices(%q) accepted", bad)
		}
	}
}

func TestPoolReserveSkipsBusy(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.pf("pf0", 5, func(i int) string {
		if i == 2 {
			return ""
		}
		return fmt.Sprintf("pf0v%d", i)
	})
	st := openStore(t)
	p := &Pool{Name: "vfs", SysfsRoot: fs.root, PF: "pf0"}
	busy := map[string]bool{"pf0v1": true}
	inUse := func(n string) bool { return busy[n] }

	a, err := p.Reserve(st, holder(1), inUse)
	if err != nil || a.Netdev != "pf0v0" {
		t.Fatalf("first: %+v %v", a, err)
	}
	b, err := p.Reserve(st, holder(2), inUse)
	if err != nil || b.Netdev != "pf0v3" {
		t.Fatalf("second (must skip busy v1 and netdev-less v2): %+v %v", b, err)
	}
	// Re-run of the first hook: same VF, even if it now looks in use (by
	// its own guest).
	busy["pf0v0"] = true
	if again, err := p.Reserve(st, holder(1), inUse); err != nil || again != a {
		t.Fatalf("re-reserve: %+v %v", again, err)
	}
	if _, err := p.Reserve(st, holder(3), inUse); err != nil {
		t.Fatal(err)
	}
	_, err = p.Reserve(st, holder(4), inUse)
	var pe *store.PoolExhaustedError
	if !errors.As(err, &pe) {
		t.Fatalf("want exhaustion, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{`"vfs"`, "guest1", "guest2", "guest3", "in use outside virtap", "0000:01:01.1", "0000:01:01.2"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(strings.SplitN(msg, "in use outside", 2)[1], "0000:01:01.0") {
		t.Errorf("a device held by virtap is reported as busy: %q", msg)
	}

	stat, err := p.Status(st, inUse)
	if err != nil {
		t.Fatal(err)
	}
	if stat.Size != 5 || stat.Free != 0 || len(stat.Holders) != 3 || len(stat.Busy) != 1 || len(stat.Missing) != 1 || stat.Missing[0] != "0000:01:01.2" {
		t.Fatalf("status: %+v", stat)
	}
	if err := stat.Headroom(1); err == nil || !strings.Contains(err.Error(), `"vfs" has 0 free of 5`) {
		t.Fatalf("headroom: %v", err)
	}
	if err := stat.Headroom(0); err != nil {
		t.Fatal(err)
	}

	rel, err := p.ReleaseHolder(st, uuidN(2))
	if err != nil || len(rel) != 1 || rel[0].Device != b.Key() {
		t.Fatalf("release: %+v %v", rel, err)
	}
	if c, err := p.Reserve(st, holder(4), inUse); err != nil || c != b {
		t.Fatalf("after release: %+v %v", c, err)
	}
	if stat, _ := p.Status(st, nil); stat.Free != 1 || len(stat.Missing) != 1 || stat.Missing[0] != "0000:01:01.2" {
		t.Fatalf("status without inUse: %+v", stat)
	}
}

func TestPoolConcurrentReserve(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.pf("pf0", 8, func(i int) string { return fmt.Sprintf("pf0v%d", i) })
	st := openStore(t)
	p := &Pool{Name: "eight", SysfsRoot: fs.root, PF: "pf0"}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		got   = map[string]int{}
		fails int
	)
	start := make(chan struct{})
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			vf, err := p.Reserve(st, holder(i), nil)
			mu.Lock()
			defer mu.Unlock()
			var pe *store.PoolExhaustedError
			switch {
			case err == nil:
				got[vf.Netdev]++
			case errors.As(err, &pe):
				fails++
			default:
				t.Errorf("reserve %d: %v", i, err)
			}
		}(i)
	}
	close(start)
	wg.Wait()
	if len(got) != 8 || fails != 24 {
		t.Fatalf("%d devices %v, %d exhausted; want 8 and 24", len(got), got, fails)
	}
	for d, n := range got {
		if n != 1 {
			t.Errorf("%s given %d times", d, n)
		}
	}
}

func TestExplicitDevicesPool(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.plain("sv0")
	fs.plain("sv1")
	st := openStore(t)
	// sv2 is listed but gone (netlink, as inUse, says so): skipped, not fatal.
	gone := func(n string) bool { return n == "sv2" }
	p := &Pool{Name: "list", SysfsRoot: fs.root, Devices: []string{"sv0", "sv2", "sv1"}}
	a, err := p.Reserve(st, holder(1), gone)
	if err != nil || a.Netdev != "sv0" {
		t.Fatalf("%+v %v", a, err)
	}
	b, err := p.Reserve(st, holder(2), gone)
	if err != nil || b.Netdev != "sv1" {
		t.Fatalf("%+v %v", b, err)
	}
	if _, err := p.Reserve(st, holder(3), gone); err == nil || !strings.Contains(err.Error(), "sv2") {
		t.Fatalf("exhaustion should name the missing sv2: %v", err)
	}
	bad := &Pool{Name: "bad", SysfsRoot: fs.root, Devices: []string{"../../etc"}}
	if _, err := bad.Reserve(st, holder(4), nil); err == nil {
		t.Fatal("accepted a path as a device")
	}
	both := &Pool{Name: "both", SysfsRoot: fs.root, PF: "x", Devices: []string{"sv0"}}
	if _, err := both.Members(); err == nil {
		t.Fatal("accepted pf and devices together")
	}
}
