package store

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

func openT(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{NoSync: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func uuidN(i int) string {
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
}

func macN(i int) string {
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", (i>>16)&0xff, (i>>8)&0xff, i&0xff)
}

func mustConsistent(t testing.TB, s *Store) {
	t.Helper()
	problems, err := s.Check()
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if len(problems) > 0 {
		t.Fatalf("inconsistent store:\n%s", strings.Join(problems, "\n"))
	}
}

func TestPermissions(t *testing.T) {
	for _, mask := range []int{0o022, 0o000, 0o077} {
		t.Run(fmt.Sprintf("umask%03o", mask), func(t *testing.T) {
			old := syscall.Umask(mask)
			defer syscall.Umask(old)
			dir := filepath.Join(t.TempDir(), "a", "state")
			s := openT(t, dir)
			s.Close()
			assertMode(t, dir, 0o700)
			assertMode(t, filepath.Join(dir, DBFile), 0o600)
			assertMode(t, filepath.Join(dir, LockFile), 0o600)
		})
	}
	t.Run("existing-open-dir", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, DBFile), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		s := openT(t, dir)
		s.Close()
		assertMode(t, dir, 0o700)
		assertMode(t, filepath.Join(dir, DBFile), 0o600)
	})
	t.Run("db-symlink-refused", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(t.TempDir(), "elsewhere")
		if err := os.Symlink(target, filepath.Join(dir, DBFile)); err != nil {
			t.Fatal(err)
		}
		if s, err := Open(dir, Options{NoSync: true}); err == nil {
			s.Close()
			t.Fatal("open followed a symlinked database")
		}
		if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("symlink target was created: %v", err)
		}
	})
}

func assertMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %04o, want %04o", path, got, want)
	}
}

func TestReadOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := Open(dir, Options{ReadOnly: true}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read-only open of missing state: got %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read-only open created the state directory")
	}
	s := openT(t, dir)
	if err := s.PutIface(uuidN(1), "web", Iface{MAC: macN(1), Device: "vt0", State: StateReady}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	ro, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	// Two readers at once share the lock.
	ro2, err := Open(dir, Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("second reader: %v", err)
	}
	ro2.Close()
	if d, ok, err := ro.GetDomain(uuidN(1)); err != nil || !ok || d.Name != "web" {
		t.Fatalf("get: %v %v %+v", err, ok, d)
	}
	if err := ro.PutIface(uuidN(2), "x", Iface{MAC: macN(2)}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("write on read-only store: %v", err)
	}
	// A writer waits for the reader and gives up after its timeout.
	start := time.Now()
	if _, err := Open(dir, Options{Timeout: 200 * time.Millisecond}); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("writer while reader holds lock: %v", err)
	}
	if el := time.Since(start); el < 200*time.Millisecond || el > 2*time.Second {
		t.Fatalf("lock timeout took %v", el)
	}
}

func TestDomainRecords(t *testing.T) {
	s := openT(t, t.TempDir())
	u := uuidN(7)
	upper := strings.ToUpper(u)
	if err := s.PutIface(upper, "web", Iface{MAC: "52:54:00:AA:BB:01", Network: "lan", Kind: "macvtap", Device: "vt-a1", Parent: "eth0", Mode: "bridge"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutIface(u, "", Iface{MAC: "52:54:00:aa:bb:02", Network: "lan", Kind: "macvtap", Device: "vt-a2", State: StateReady}); err != nil {
		t.Fatal(err)
	}
	d, ok, err := s.GetDomain("{" + u + "}")
	if err != nil || !ok {
		t.Fatalf("get: %v %v", err, ok)
	}
	if d.UUID != u || d.Name != "web" || len(d.Interfaces) != 2 {
		t.Fatalf("domain: %+v", d)
	}
	if d.Interfaces[0].MAC != "52:54:00:aa:bb:01" || d.Interfaces[0].State != StatePending {
		t.Fatalf("first iface not normalised/pending: %+v", d.Interfaces[0])
	}
	pend, err := s.Pending()
	if err != nil || len(pend) != 1 || pend[0].Device != "vt-a1" || pend[0].Name != "web" {
		t.Fatalf("pending: %v %+v", err, pend)
	}
	if err := s.SetIfaceState(u, "52:54:00:aa:bb:01", StateReady); err != nil {
		t.Fatal(err)
	}
	if pend, _ := s.Pending(); len(pend) != 0 {
		t.Fatalf("pending after ready: %+v", pend)
	}
	// Upsert by MAC: the device moves, the index follows.
	if err := s.PutIface(u, "web2", Iface{MAC: "52:54:00:aa:bb:01", Device: "vt-b1", State: StateReady, Extra: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := s.DeviceOwner("vt-a1"); ok {
		t.Fatal("old device still indexed")
	}
	if du, m, ok, err := s.DeviceOwner("vt-b1"); err != nil || !ok || du != u || m != "52:54:00:aa:bb:01" {
		t.Fatalf("device owner: %v %v %v %v", du, m, ok, err)
	}
	if err := s.SetIfaceExtra(u, "52:54:00:aa:bb:01", map[string]string{"k2": "v2"}); err != nil {
		t.Fatal(err)
	}
	d, _, _ = s.GetDomain(u)
	if d.Name != "web2" || len(d.Interfaces) != 2 || d.Interfaces[0].Extra["k"] != "v" || d.Interfaces[0].Extra["k2"] != "v2" {
		t.Fatalf("after upsert: %+v", d)
	}
	if err := s.SetIfaceState(u, macN(99), StateReady); !errors.Is(err, ErrNotFound) {
		t.Fatalf("state of missing iface: %v", err)
	}
	if err := s.SetIfaceState(u, "52:54:00:aa:bb:01", "done"); err == nil {
		t.Fatal("accepted a bogus state")
	}
	if err := s.PutIface("web", "web", Iface{MAC: macN(1)}); err == nil {
		t.Fatal("accepted a name as uuid")
	}
	if err := s.PutIface(u, "web", Iface{MAC: "nonsense"}); err == nil {
		t.Fatal("accepted a bad mac")
	}
	mustConsistent(t, s)

	if err := s.RemoveIface(u, "52:54:00:aa:bb:01"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveIface(u, "52:54:00:aa:bb:01"); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if err := s.RemoveIface(u, "52:54:00:aa:bb:02"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.GetDomain(u); ok {
		t.Fatal("domain kept after its last interface")
	}
	if err := s.PutIface(uuidN(8), "x", Iface{MAC: macN(8), Device: "vt-x"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDomain(uuidN(8)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDomain(uuidN(8)); err != nil {
		t.Fatal(err)
	}
	if doms, err := s.Domains(); err != nil || len(doms) != 0 {
		t.Fatalf("domains left: %v %+v", err, doms)
	}
	mustConsistent(t, s)
}

func TestReserveIdempotentAndRelease(t *testing.T) {
	s := openT(t, t.TempDir())
	devs := []string{"vf0", "vf1", "vf2"}
	a := Holder{UUID: uuidN(1), MAC: macN(1), Name: "alpha"}
	d1, err := s.Reserve("pool", devs, a)
	if err != nil || d1 != "vf0" {
		t.Fatalf("reserve: %q %v", d1, err)
	}
	// Same holder, even with another candidate order and upper-case keys.
	again := Holder{UUID: strings.ToUpper(a.UUID), MAC: strings.ToUpper(a.MAC)}
	d2, err := s.Reserve("pool", []string{"vf2", "vf1"}, again)
	if err != nil || d2 != d1 {
		t.Fatalf("re-reserve gave %q (%v), want %q", d2, err, d1)
	}
	// A second interface of the same domain gets another device.
	d3, err := s.Reserve("pool", devs, Holder{UUID: a.UUID, MAC: macN(2), Name: "alpha"})
	if err != nil || d3 != "vf1" {
		t.Fatalf("second iface: %q %v", d3, err)
	}
	// The same domain in another pool is independent.
	if d, err := s.Reserve("other", []string{"vf7", "vf8"}, a); err != nil || d != "vf7" {
		t.Fatalf("other pool: %q %v", d, err)
	}
	b := Holder{UUID: uuidN(2), MAC: macN(3), Name: "beta"}
	if d, err := s.Reserve("pool", devs, b); err != nil || d != "vf2" {
		t.Fatalf("beta: %q %v", d, err)
	}
	if err := s.AnnotateReservation("pool", "vf2", b.UUID, map[string]string{"mac": "00:11:22:33:44:55"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AnnotateReservation("pool", "vf2", a.UUID, map[string]string{"x": "y"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("annotate by non-holder: %v", err)
	}
	r, ok, err := s.ReservationOf("pool", b.UUID, b.MAC)
	if err != nil || !ok || r.Device != "vf2" || r.Data["mac"] != "00:11:22:33:44:55" || r.Holder.Name != "beta" {
		t.Fatalf("reservation of beta: %+v %v %v", r, ok, err)
	}
	res, err := s.Reservations("pool")
	if err != nil || len(res) != 3 {
		t.Fatalf("reservations: %v %+v", err, res)
	}
	hr, err := s.HolderReservations(a.UUID)
	if err != nil || len(hr) != 3 {
		t.Fatalf("holder reservations: %v %+v", err, hr)
	}
	mustConsistent(t, s)

	freed, err := s.ReleaseHolder(a.UUID)
	if err != nil || len(freed) != 3 {
		t.Fatalf("release holder: %v %+v", err, freed)
	}
	if again, err := s.ReleaseHolder(a.UUID); err != nil || len(again) != 0 {
		t.Fatalf("second release: %v %+v", err, again)
	}
	if res, _ := s.Reservations("pool"); len(res) != 1 || res[0].Device != "vf2" {
		t.Fatalf("after release: %+v", res)
	}
	if r, ok, err := s.Release("pool", b.UUID, b.MAC); err != nil || !ok || r.Data["mac"] == "" {
		t.Fatalf("release one: %+v %v %v", r, ok, err)
	}
	if _, ok, err := s.Release("pool", b.UUID, b.MAC); err != nil || ok {
		t.Fatalf("release twice: %v %v", ok, err)
	}
	mustConsistent(t, s)
}

func TestPoolExhaustedError(t *testing.T) {
	s := openT(t, t.TempDir())
	devs := []string{"vf0", "vf1"}
	_, err := s.Reserve("empty", nil, Holder{UUID: uuidN(9), MAC: macN(9)})
	var pe *PoolExhaustedError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), `"empty"`) || !strings.Contains(err.Error(), "no usable devices") {
		t.Fatalf("empty pool: %v", err)
	}
	for i, name := range []string{"web-1", "db-1"} {
		if _, err := s.Reserve("vfs", devs, Holder{UUID: uuidN(i), MAC: macN(i), Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.Reserve("vfs", devs, Holder{UUID: uuidN(5), MAC: macN(5), Name: "late"})
	if !errors.As(err, &pe) {
		t.Fatalf("want *PoolExhaustedError, got %T %v", err, err)
	}
	if pe.Pool != "vfs" || len(pe.Holders) != 2 || pe.Holders["vf1"].Name != "db-1" {
		t.Fatalf("error fields: %+v", pe)
	}
	msg := err.Error()
	for _, want := range []string{`"vfs"`, `vf0 by "web-1"`, `vf1 by "db-1"`, uuidN(0), uuidN(1)} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	pe.Busy = []string{"vf7"}
	if !strings.Contains(pe.Error(), "in use outside virtap: vf7") {
		t.Errorf("busy not named: %q", pe.Error())
	}
	// Nothing of the failed attempt was written.
	if hr, _ := s.HolderReservations(uuidN(5)); len(hr) != 0 {
		t.Fatalf("failed reserve left %+v", hr)
	}
	mustConsistent(t, s)
}

// Two pools that name one device (a devices list naming a VF of another
// pool's PF: the policy cannot see that) never both hand it out.
func TestReserveRefusesDeviceOfAnotherPool(t *testing.T) {
	s := openT(t, t.TempDir())
	a := Holder{UUID: uuidN(1), MAC: macN(1), Name: "alpha"}
	b := Holder{UUID: uuidN(2), MAC: macN(2), Name: "beta"}
	if d, err := s.Reserve("pfpool", []string{"0000:03:00.2", "0000:03:00.3"}, a); err != nil || d != "0000:03:00.2" {
		t.Fatalf("pfpool: %q %v", d, err)
	}
	if d, err := s.Reserve("listpool", []string{"0000:03:00.2", "0000:03:00.4"}, b); err != nil || d != "0000:03:00.4" {
		t.Fatalf("listpool got %q (%v), want the device no other pool holds", d, err)
	}
	var pe *PoolExhaustedError
	c := Holder{UUID: uuidN(3), MAC: macN(3), Name: "gamma"}
	if d, err := s.Reserve("listpool", []string{"0000:03:00.2"}, c); !errors.As(err, &pe) {
		t.Fatalf("a device held by another pool was handed out: %q %v", d, err)
	}
	mustConsistent(t, s)
}

func TestReserveConcurrentGoroutines(t *testing.T) {
	pool := []string{"vf0", "vf1", "vf2", "vf3", "vf4", "vf5", "vf6", "vf7"}
	for _, shared := range []bool{true, false} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			dir := t.TempDir()
			var s *Store
			if shared {
				s = openT(t, dir)
			}
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
					st := s
					if !shared {
						var err error
						// Separate opens in one process contend on the
						// flock exactly like separate processes.
						st, err = Open(dir, Options{NoSync: true, Timeout: 20 * time.Second})
						if err != nil {
							t.Errorf("open %d: %v", i, err)
							return
						}
						defer st.Close()
					}
					<-start
					d, err := st.Reserve("p", pool, Holder{UUID: uuidN(i), MAC: macN(i)})
					mu.Lock()
					defer mu.Unlock()
					var pe *PoolExhaustedError
					switch {
					case err == nil:
						got[d]++
					case errors.As(err, &pe):
						fails++
					default:
						t.Errorf("reserve %d: %v", i, err)
					}
				}(i)
			}
			close(start)
			wg.Wait()
			checkEightOnce(t, got, fails)
			if s == nil {
				s = openT(t, dir)
			}
			mustConsistent(t, s)
		})
	}
}

func checkEightOnce(t *testing.T, got map[string]int, fails int) {
	t.Helper()
	if len(got) != 8 || fails != 24 {
		t.Fatalf("got %d devices (%v) and %d exhausted, want 8 and 24", len(got), got, fails)
	}
	for d, n := range got {
		if n != 1 {
			t.Errorf("device %s given %d times", d, n)
		}
	}
}

func TestLeases(t *testing.T) {
	s := openT(t, t.TempDir())
	p := netip.MustParsePrefix("192.0.2.0/29") // .1 - .6 assignable
	excl := []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	var got []string
	for i := 0; i < 5; i++ {
		a, err := s.Lease("lan", p, netip.Addr{}, netip.Addr{}, excl, Holder{UUID: uuidN(i), MAC: macN(i)})
		if err != nil {
			t.Fatalf("lease %d: %v", i, err)
		}
		got = append(got, a.String())
	}
	want := []string{"192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("leases %v, want %v", got, want)
	}
	// Stable per holder.
	if a, err := s.Lease("lan", p, netip.Addr{}, netip.Addr{}, excl, Holder{UUID: uuidN(3), MAC: macN(3)}); err != nil || a.String() != "192.0.2.5" {
		t.Fatalf("re-lease: %v %v", a, err)
	}
	_, err := s.Lease("lan", p, netip.Addr{}, netip.Addr{}, excl, Holder{UUID: uuidN(9), MAC: macN(9)})
	var ae *AddressesExhaustedError
	if !errors.As(err, &ae) || ae.Leased != 5 || ae.Excluded != 1 || !strings.Contains(err.Error(), `"lan"`) {
		t.Fatalf("exhausted: %v", err)
	}
	if freed, err := s.ReleaseLeases(uuidN(1)); err != nil || len(freed) != 1 || freed[0].Addr.String() != "192.0.2.3" {
		t.Fatalf("release: %v %+v", err, freed)
	}
	if a, err := s.Lease("lan", p, netip.Addr{}, netip.Addr{}, excl, Holder{UUID: uuidN(9), MAC: macN(9)}); err != nil || a.String() != "192.0.2.3" {
		t.Fatalf("reuse freed: %v %v", a, err)
	}
	// A range; the held address outside the new range moves.
	start, end := netip.MustParseAddr("192.0.2.5"), netip.MustParseAddr("192.0.2.6")
	if a, err := s.Lease("lan", p, start, end, nil, Holder{UUID: uuidN(0), MAC: macN(0)}); err == nil {
		t.Fatalf("range full, still got %v", a)
	}
	if _, err := s.Lease("lan", p, netip.MustParseAddr("198.51.100.1"), netip.Addr{}, nil, Holder{UUID: uuidN(0), MAC: macN(0)}); err == nil {
		t.Fatal("accepted range start outside prefix")
	}
	// IPv6: no scanning of the /64, first address after the anycast one.
	p6 := netip.MustParsePrefix("2001:db8::/64")
	if a, err := s.Lease("v6", p6, netip.Addr{}, netip.Addr{}, nil, Holder{UUID: uuidN(0), MAC: macN(0)}); err != nil || a.String() != "2001:db8::1" {
		t.Fatalf("v6: %v %v", a, err)
	}
	ls, err := s.Leases("lan")
	if err != nil || len(ls) != 5 {
		t.Fatalf("leases: %v %d", err, len(ls))
	}
	for i := 1; i < len(ls); i++ {
		if !ls[i-1].Addr.Less(ls[i].Addr) {
			t.Fatalf("not sorted: %v", ls)
		}
	}
	// /31 and /32 have no network/broadcast to skip.
	if a, err := s.Lease("p2p", netip.MustParsePrefix("203.0.113.8/32"), netip.Addr{}, netip.Addr{}, nil, Holder{UUID: uuidN(0), MAC: macN(0)}); err != nil || a.String() != "203.0.113.8" {
		t.Fatalf("/32: %v %v", a, err)
	}
	if err := s.Forget(uuidN(0)); err != nil {
		t.Fatal(err)
	}
	if ls, _ := s.Leases("v6"); len(ls) != 0 {
		t.Fatalf("forget kept leases: %+v", ls)
	}
	mustConsistent(t, s)
}

// Names are labels: hostile guest, pool and network names create no file
// anywhere, and only the two known files exist in the state directory.
func TestNamesNeverBecomePaths(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "state")
	marker := filepath.Join(root, "p")
	names := []string{"../../x", "../x", "/etc/passwd", "$(touch " + marker + ")", "`touch " + marker + "`", "a/b", ".", ".."}
	s := openT(t, dir)
	for i, n := range names {
		h := Holder{UUID: uuidN(i), MAC: macN(i), Name: n}
		if err := s.PutIface(h.UUID, n, Iface{MAC: h.MAC, Network: n, Device: n, Pool: n}); err != nil {
			t.Fatalf("put %q: %v", n, err)
		}
		if _, err := s.Reserve(n, []string{n}, h); err != nil {
			t.Fatalf("reserve %q: %v", n, err)
		}
		if _, err := s.Lease(n, netip.MustParsePrefix("198.51.100.0/24"), netip.Addr{}, netip.Addr{}, nil, h); err != nil {
			t.Fatalf("lease %q: %v", n, err)
		}
	}
	if err := s.PutIface("../../x", "x", Iface{MAC: macN(1)}); err == nil {
		t.Fatal("a path was accepted as uuid")
	}
	mustConsistent(t, s)
	s.Close()
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files = append(files, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	want := []string{".", "state", "state/" + DBFile, "state/" + LockFile}
	if fmt.Sprint(files) != fmt.Sprint(want) {
		t.Fatalf("files under %s: %v, want %v", root, files, want)
	}
	for _, p := range []string{"/x", filepath.Join(filepath.Dir(root), "x")} {
		if _, err := os.Lstat(p); err == nil {
			t.Logf("note: %s exists (not necessarily ours)", p)
		}
	}
}

func TestRepairRebuildsIndexes(t *testing.T) {
	s := openT(t, t.TempDir())
	u := uuid.NewString()
	if err := s.PutIface(u, "g", Iface{MAC: macN(1), Device: "vt1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve("p", []string{"d0"}, Holder{UUID: u, MAC: macN(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lease("n", netip.MustParsePrefix("192.0.2.0/24"), netip.Addr{}, netip.Addr{}, nil, Holder{UUID: u, MAC: macN(1)}); err != nil {
		t.Fatal(err)
	}
	// Damage every index by hand (what a bug, not a crash, could do).
	err := s.update(func(tx *txT) error {
		if err := tx.Bucket(bDevices).Delete([]byte("vt1")); err != nil {
			return err
		}
		if err := tx.Bucket(bPending).Put([]byte("ghost"), []byte(StatePending)); err != nil {
			return err
		}
		if err := tx.Bucket(bResH).DeleteBucket([]byte(u)); err != nil {
			return err
		}
		return tx.Bucket(bLeaseH).Bucket([]byte(u)).Put([]byte("x\x00y"), []byte("z"))
	})
	if err != nil {
		t.Fatal(err)
	}
	problems, err := s.Check()
	if err != nil || len(problems) != 4 {
		t.Fatalf("check found %d problems (%v): %s", len(problems), err, strings.Join(problems, "\n"))
	}
	if _, err := s.Repair(); err != nil {
		t.Fatal(err)
	}
	mustConsistent(t, s)
	// The rebuilt index serves the idempotent path again.
	if d, err := s.Reserve("p", []string{"d9"}, Holder{UUID: u, MAC: macN(1)}); err != nil || d != "d0" {
		t.Fatalf("after repair: %q %v", d, err)
	}
}
