// Package passthrough manages SR-IOV VF pools (setup 3): it discovers the
// VFs of a physical function from sysfs (the sysfs root is a parameter, so
// tests use a fake tree), reserves one per guest interface through the
// state store, programs it through the PF (MAC, VLAN, spoof check, trust,
// rate) after saving its previous settings, and restores those on release.
//
// A pool member is identified by its Key: the VF's PCI address when sysfs
// knows it (it survives the netdev disappearing when the VF is bound to
// vfio-pci), otherwise its netdev name (explicit `devices = [...]` pools of
// stand-ins).
package passthrough

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/virtap/virtap/internal/ifname"
)

// VF is one member of a pool.
type VF struct {
	PF     string // physical function netdev, "" when unknown
	Index  int    // VF index on the PF, -1 when unknown
	PCI    string // PCI address (basename of the virtfn link target), "" when unknown
	Netdev string // current netdev name, "" when the VF has none (e.g. bound to vfio-pci)
}

// Key is the name under which the VF is reserved in the store.
func (v VF) Key() string {
	if v.PCI != "" {
		return v.PCI
	}
	return v.Netdev
}

// Discover lists the VFs of pf from <sysfsRoot>/class/net/<pf>/device/virtfn<N>,
// sorted by index. A VF without a netdev (bound to another driver) is
// listed with Netdev "".
func Discover(sysfsRoot, pf string) ([]VF, error) {
	if err := ifname.Validate(pf); err != nil {
		return nil, fmt.Errorf("pf: %w", err)
	}
	devDir := filepath.Join(sysfsRoot, "class", "net", pf, "device")
	entries, err := os.ReadDir(devDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("pf %q: no such network device in %s", pf, filepath.Join(sysfsRoot, "class", "net"))
		}
		return nil, fmt.Errorf("pf %q: %w", pf, err)
	}
	var out []VF
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "virtfn")
		if !ok {
			continue
		}
		idx, err := strconv.Atoi(rest)
		if err != nil || idx < 0 {
			continue
		}
		link := filepath.Join(devDir, e.Name())
		target, err := os.Readlink(link)
		if err != nil {
			return nil, fmt.Errorf("pf %q: %s: %w", pf, e.Name(), err)
		}
		out = append(out, VF{PF: pf, Index: idx, PCI: filepath.Base(target), Netdev: netdevOf(link)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("pf %q has no virtual functions (is sriov_numvfs set?)", pf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, nil
}

// netdevOf returns the single entry of <devicePath>/net/, or "".
func netdevOf(devicePath string) string {
	ents, err := os.ReadDir(filepath.Join(devicePath, "net"))
	if err != nil || len(ents) == 0 {
		return ""
	}
	return ents[0].Name()
}

// DiscoverDevices validates an explicit pool (`devices = [...]`): every name
// must exist as <sysfsRoot>/class/net/<name>. When sysfs shows the device
// is a VF (device/physfn), PF, Index and PCI are filled in.
func DiscoverDevices(sysfsRoot string, names []string) ([]VF, error) {
	var out []VF
	seen := map[string]bool{}
	for _, n := range names {
		if err := ifname.Validate(n); err != nil {
			return nil, fmt.Errorf("devices: %w", err)
		}
		if seen[n] {
			return nil, fmt.Errorf("devices: %q listed twice", n)
		}
		seen[n] = true
		dir := filepath.Join(sysfsRoot, "class", "net", n)
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("devices: %q: no such network device", n)
		}
		vf := VF{Index: -1, Netdev: n}
		if pfDev := filepath.Join(dir, "device", "physfn"); exists(pfDev) {
			if t, err := os.Readlink(filepath.Join(dir, "device")); err == nil {
				vf.PCI = filepath.Base(t)
			}
			vf.PF = netdevOf(pfDev)
			vf.Index = vfIndex(pfDev, vf.PCI)
		}
		out = append(out, vf)
	}
	return out, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// vfIndex finds which virtfn<N> of the PF device points at pci.
func vfIndex(pfDev, pci string) int {
	if pci == "" {
		return -1
	}
	ents, err := os.ReadDir(pfDev)
	if err != nil {
		return -1
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), "virtfn")
		if !ok {
			continue
		}
		t, err := os.Readlink(filepath.Join(pfDev, e.Name()))
		if err != nil || filepath.Base(t) != pci {
			continue
		}
		if idx, err := strconv.Atoi(rest); err == nil {
			return idx
		}
	}
	return -1
}
