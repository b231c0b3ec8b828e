package host

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/store"
	"github.com/virtap/virtap/provision/domain"
)

// recordGuest is a guest whose virtap record holds one interface, given as
// the attributes of its <virtap:interface> element.
func (f *fixture) recordGuest(t *testing.T, attrs string) *Guest {
	t.Helper()
	raw := fmt.Sprintf(`<domain type='qemu'><name>web</name><uuid>%s</uuid><metadata>
<virtap:virtap xmlns:virtap="https://virtap.dev/xmlns/domain/1"><virtap:interface %s/></virtap:virtap>
</metadata><devices/></domain>`, f.dom, attrs)
	d, err := domain.Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGuest(d)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestPrepareErrorsKeepTheirCause: the *Error that Prepare returns names
// the interface and the fix, and still carries its cause for errors.Is and
// errors.As.
func TestPrepareErrorsKeepTheirCause(t *testing.T) {
	f := newFixture(t)
	// A device of someone else's already has the name virtap wants.
	mac, _ := net.ParseMAC("52:54:00:00:00:31")
	f.libvirtMacvtap(t, "vtinotours22222", mac)
	g := f.recordGuest(t, fmt.Sprintf(`mac="52:54:00:00:00:32" network="edge" kind="ipvtap" mode="l2" flag="bridge" parent="%s" device="vtinotours22222" trust="trusted"`, f.s.Uplink))
	err := f.r.Prepare(g)
	var he *Error
	if !errors.Is(err, netdev.ErrNotOurs) || !errors.As(err, &he) || he.MAC != "52:54:00:00:00:32" {
		t.Fatalf("prepare over a device that is not virtap's: want *Error wrapping ErrNotOurs, got %T %v", err, err)
	}
	if _, ok, _ := f.r.Net.Find("vtinotours22222"); !ok {
		t.Fatal("the device that is not virtap's was removed")
	}
	// A pool none of whose devices can be had.
	g = f.recordGuest(t, `mac="52:54:00:00:00:33" network="pool" kind="passthrough" mode="passthrough" devices="vtnosuch0" trust="trusted"`)
	err = f.r.Prepare(g)
	var pe *store.PoolExhaustedError
	if !errors.As(err, &pe) || !errors.As(err, &he) || pe.Pool != "pool" {
		t.Fatalf("prepare from an exhausted pool: want *Error wrapping *store.PoolExhaustedError, got %T %v", err, err)
	}
	if dom, had, err := f.r.Store.GetDomain(f.dom.String()); err != nil || had && len(dom.Interfaces) > 0 {
		t.Fatalf("failed prepares left records: %+v %v", dom, err)
	}
}
