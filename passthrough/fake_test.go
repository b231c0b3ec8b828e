package passthrough

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/virtap/virtap/internal/store"
)

// fakeSysfs builds, under root, the part of sysfs that discovery reads, the
// way the kernel lays it out:
//
//	devices/pci0000:00/<pci>/net/<ifname>/
//	devices/pci0000:00/<pfpci>/virtfn<N> -> ../<vfpci>
//	devices/pci0000:00/<vfpci>/physfn -> ../<pfpci>
//	class/net/<ifname> -> ../../devices/pci0000:00/<pci>/net/<ifname>
//	class/net/<ifname>/device -> ../../../<pci>   (inside the device tree)
type fakeSysfs struct {
	t    *testing.T
	root string
	bus  int
}

func newFakeSysfs(t *testing.T) *fakeSysfs {
	root := filepath.Join(t.TempDir(), "sys")
	for _, d := range []string{"class/net", "devices/pci0000:00"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &fakeSysfs{t: t, root: root}
}

func (f *fakeSysfs) must(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

// netdev adds a device with PCI address pci and, unless ifname is "", a
// netdev named ifname.
func (f *fakeSysfs) netdev(pci, ifname string) {
	dev := filepath.Join(f.root, "devices/pci0000:00", pci)
	f.must(os.MkdirAll(dev, 0o755))
	if ifname == "" {
		return
	}
	nd := filepath.Join(dev, "net", ifname)
	f.must(os.MkdirAll(nd, 0o755))
	f.must(os.Symlink("../../../"+pci, filepath.Join(nd, "device")))
	f.must(os.Symlink("../../devices/pci0000:00/"+pci+"/net/"+ifname, filepath.Join(f.root, "class/net", ifname)))
}

// pf adds a PF with n VFs; vfName(i) names VF i's netdev ("" = none).
func (f *fakeSysfs) pf(name string, n int, vfName func(i int) string) {
	f.bus++
	pfPCI := fmt.Sprintf("0000:%02x:00.0", f.bus)
	f.netdev(pfPCI, name)
	for i := 0; i < n; i++ {
		vfPCI := fmt.Sprintf("0000:%02x:%02x.%d", f.bus, 1+i/8, i%8)
		f.netdev(vfPCI, vfName(i))
		f.must(os.Symlink("../"+vfPCI, filepath.Join(f.root, "devices/pci0000:00", pfPCI, fmt.Sprint("virtfn", i))))
		f.must(os.Symlink("../"+pfPCI, filepath.Join(f.root, "devices/pci0000:00", vfPCI, "physfn")))
	}
}

// plain adds a netdev that is not a VF.
func (f *fakeSysfs) plain(name string) {
	f.bus++
	f.netdev(fmt.Sprintf("0000:%02x:00.0", f.bus), name)
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{NoSync: true, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func uuidN(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }
func macN(i int) string  { return fmt.Sprintf("52:54:00:00:%02x:%02x", (i>>8)&0xff, i&0xff) }

func holder(i int) store.Holder {
	return store.Holder{UUID: uuidN(i), MAC: macN(i), Name: fmt.Sprint("guest", i)}
}
