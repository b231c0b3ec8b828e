package passthrough

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
)

// recorder is a VFLinker over an in-memory PF: it reports the VFs it was
// given, applies every set to them and records the calls.
type recorder struct {
	vfs   map[string]map[int]*VFSettings
	calls []string
	fail  map[string]error // call name -> error
}

func newRecorder(pf string, n int) *recorder {
	r := &recorder{vfs: map[string]map[int]*VFSettings{pf: {}}, fail: map[string]error{}}
	for i := 0; i < n; i++ {
		r.vfs[pf][i] = &VFSettings{MAC: net.HardwareAddr{0x02, 0, 0, 0, 0, byte(i)}, VLAN: 0, SpoofChk: true, MaxTxRate: 0}
	}
	return r
}

func (r *recorder) VFs(pf string) (map[int]VFSettings, error) {
	m, ok := r.vfs[pf]
	if !ok {
		return nil, fmt.Errorf("link %s: %w", pf, errors.New("not found"))
	}
	out := map[int]VFSettings{}
	for i, s := range m {
		out[i] = *s
	}
	return out, nil
}

func (r *recorder) do(name, pf string, vf int, f func(*VFSettings)) error {
	r.calls = append(r.calls, fmt.Sprintf("%s %s/%d", name, pf, vf))
	if err := r.fail[name]; err != nil {
		return err
	}
	s, ok := r.vfs[pf][vf]
	if !ok {
		return errors.New("no such vf")
	}
	f(s)
	return nil
}

func (r *recorder) SetVfHardwareAddr(pf string, vf int, mac net.HardwareAddr) error {
	return r.do("mac", pf, vf, func(s *VFSettings) { s.MAC = mac })
}
func (r *recorder) SetVfVlanQos(pf string, vf, vlan, qos int) error {
	return r.do("vlan", pf, vf, func(s *VFSettings) { s.VLAN, s.QoS = vlan, qos })
}
func (r *recorder) SetVfSpoofchk(pf string, vf int, on bool) error {
	return r.do("spoofchk", pf, vf, func(s *VFSettings) { s.SpoofChk = on })
}
func (r *recorder) SetVfTrust(pf string, vf int, on bool) error {
	return r.do("trust", pf, vf, func(s *VFSettings) { s.Trust = on })
}
func (r *recorder) SetVfRate(pf string, vf, minRate, maxRate int) error {
	return r.do("rate", pf, vf, func(s *VFSettings) { s.MinTxRate, s.MaxTxRate = minRate, maxRate })
}

func ptr[T any](v T) *T { return &v }

func TestProgramAndRestore(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.pf("pf0", 4, func(i int) string { return fmt.Sprintf("pf0v%d", i) })
	st := openStore(t)
	rec := newRecorder("pf0", 4)
	p := &Pool{Name: "vfs", SysfsRoot: fs.root, PF: "pf0", Linker: rec}
	h := holder(1)
	vf, err := p.Reserve(st, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := *rec.vfs["pf0"][vf.Index]
	mac, _ := net.ParseMAC(h.MAC)
	cfg := VFConfig{MAC: mac, VLAN: ptr(100), QoS: 3, SpoofChk: ptr(false), Trust: ptr(true), MaxTxRate: ptr(1000)}
	if err := p.Program(st, vf, h, cfg); err != nil {
		t.Fatal(err)
	}
	want := VFSettings{MAC: mac, VLAN: 100, QoS: 3, SpoofChk: false, Trust: true, MaxTxRate: 1000}
	if got := *rec.vfs["pf0"][vf.Index]; !reflect.DeepEqual(got, want) {
		t.Fatalf("programmed %+v, want %+v", got, want)
	}
	// The saved settings are in the reservation (written before programming).
	r, ok, err := st.ReservationOf("vfs", h.UUID, h.MAC)
	if err != nil || !ok {
		t.Fatal(err)
	}
	if r.Data[keyMAC] != before.MAC.String() || r.Data[keyVLAN] != "0" || r.Data[keySpoofChk] != "true" || r.Data[keyPF] != "pf0" {
		t.Fatalf("saved data: %v", r.Data)
	}
	// A re-run programs again but keeps the original settings to restore.
	if err := p.Program(st, vf, h, VFConfig{VLAN: ptr(200)}); err != nil {
		t.Fatal(err)
	}
	if r2, _, _ := st.ReservationOf("vfs", h.UUID, h.MAC); !reflect.DeepEqual(r2.Data, r.Data) {
		t.Fatalf("re-run overwrote saved settings: %v", r2.Data)
	}
	// Someone else's VF is untouched.
	other := *rec.vfs["pf0"][(vf.Index+1)%4]
	rec.calls = nil
	rel, err := p.ReleaseHolder(st, h.UUID)
	if err != nil || len(rel) != 1 {
		t.Fatalf("release: %+v %v", rel, err)
	}
	if got := *rec.vfs["pf0"][vf.Index]; !reflect.DeepEqual(got, before) {
		t.Fatalf("restored %+v, want %+v", got, before)
	}
	if got := *rec.vfs["pf0"][(vf.Index+1)%4]; !reflect.DeepEqual(got, other) {
		t.Fatalf("other vf changed: %+v", got)
	}
	for _, c := range rec.calls {
		if !strings.HasSuffix(c, fmt.Sprintf("pf0/%d", vf.Index)) {
			t.Fatalf("restore touched another vf: %v", rec.calls)
		}
	}
	if len(rec.calls) != 5 {
		t.Fatalf("restore calls: %v", rec.calls)
	}
	if stat, _ := p.Status(st, nil); stat.Free != 4 {
		t.Fatalf("not freed: %+v", stat)
	}
}

func TestRestoreFailureStillReleases(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.pf("pf0", 2, func(i int) string { return fmt.Sprintf("pf0v%d", i) })
	st := openStore(t)
	rec := newRecorder("pf0", 2)
	p := &Pool{Name: "vfs", SysfsRoot: fs.root, PF: "pf0", Linker: rec}
	h := holder(1)
	vf, err := p.Reserve(st, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Program(st, vf, h, VFConfig{VLAN: ptr(7), Trust: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	rec.fail["vlan"] = errors.New("driver says no")
	_, err = p.ReleaseIface(st, h.UUID, h.MAC)
	if err == nil || !strings.Contains(err.Error(), "driver says no") {
		t.Fatalf("restore error not reported: %v", err)
	}
	// The other settings were still restored and the device is free.
	if s := rec.vfs["pf0"][vf.Index]; s.Trust {
		t.Fatalf("trust not restored after the vlan failure: %+v", s)
	}
	if _, ok, _ := st.ReservationOf("vfs", h.UUID, h.MAC); ok {
		t.Fatal("reservation kept after release")
	}
}

func TestProgramSkipsNonVF(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.pf("pf0", 3, func(i int) string { return fmt.Sprintf("pf0v%d", i) })
	fs.plain("sv0")
	st := openStore(t)
	// The PF reports only VF 0: VFs 1 and 2 exist in sysfs but not on the PF.
	rec := newRecorder("pf0", 1)
	p := &Pool{Name: "vfs", SysfsRoot: fs.root, PF: "pf0", Linker: rec}
	for i := 0; i < 3; i++ {
		vf, err := p.Reserve(st, holder(i), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Program(st, vf, holder(i), VFConfig{VLAN: ptr(5)}); err != nil {
			t.Fatal(err)
		}
	}
	if len(rec.calls) != 1 || rec.calls[0] != "vlan pf0/0" {
		t.Fatalf("calls: %v", rec.calls)
	}
	// A stand-in device (no PF) and a PF the linker does not know.
	list := &Pool{Name: "list", SysfsRoot: fs.root, Devices: []string{"sv0"}, Linker: rec}
	vf, err := list.Reserve(st, holder(9), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := list.Program(st, vf, holder(9), VFConfig{VLAN: ptr(5)}); err != nil {
		t.Fatal(err)
	}
	if len(rec.calls) != 1 {
		t.Fatalf("stand-in was programmed: %v", rec.calls)
	}
	// Programming a VF the holder does not hold is refused.
	vfs, _ := Discover(fs.root, "pf0")
	if err := p.Program(st, vfs[0], holder(2), VFConfig{}); err == nil {
		t.Fatal("programmed a vf held by someone else")
	}
}
