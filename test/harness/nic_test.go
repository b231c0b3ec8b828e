package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNICReportDead: only frames that vanished uncounted between the
// guest's queue and an attached, unshaped host device make a dead NIC; a
// filter's drops, a wrong mode, a replaced device or a shaper never do.
func TestNICReportDead(t *testing.T) {
	dead := NICReport{GuestTX: 25, FilterSeen: -1, TapFDs: []string{"/dev/tap58"}, Ifindex: 58, Attached: true}
	cases := []struct {
		name string
		mod  func(r *NICReport)
		want bool
	}{
		{"nothing reached the device", func(*NICReport) {}, true},
		{"host frames only (ipv6), guest frames vanished", func(r *NICReport) { r.HostTX = 8 }, true},
		{"filter saw and dropped the guest's frames", func(r *NICReport) { r.FilterSeen = 25 }, false},
		{"frames left the device (wrong mode, isolation)", func(r *NICReport) { r.HostTX = 30 }, false},
		{"device dropped them (down)", func(r *NICReport) { r.HostTXDropped = 25 }, false},
		{"qemu's fd is on a deleted device", func(r *NICReport) { r.Attached = false }, false},
		{"a shaper on the device", func(r *NICReport) { r.Qdiscs = []string{"tbf"} }, false},
		{"too few frames to tell", func(r *NICReport) { r.GuestTX = 2 }, false},
		{"guest printed no counters", func(r *NICReport) { r.GuestTX = -1 }, false},
		{"counters unreadable", func(r *NICReport) { r.Err = os.ErrNotExist }, false},
	}
	for _, c := range cases {
		r := dead
		c.mod(&r)
		if got := r.Dead(); got != c.want {
			t.Errorf("%s: Dead() = %v, want %v (%s)", c.name, got, c.want, r)
		}
	}
}

func TestGuestStats(t *testing.T) {
	p := filepath.Join(t.TempDir(), "serial")
	log := "VIRTAP-STATS eth0 tx=2 rx=1\r\nnoise\nVIRTAP-STATS eth1 tx=9 rx=9\nVIRTAP-STATS eth0 tx=7 rx=3\n"
	if err := os.WriteFile(p, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	if tx, rx := GuestStats(p, 0, "eth0"); tx != 7 || rx != 3 {
		t.Fatalf("eth0: tx=%d rx=%d, want 7 3", tx, rx)
	}
	if tx, rx := GuestStats(p, int64(len(log)), "eth0"); tx != -1 || rx != -1 {
		t.Fatalf("after the end: tx=%d rx=%d, want -1 -1", tx, rx)
	}
}

func TestHookOutput(t *testing.T) {
	p := filepath.Join(t.TempDir(), "libvirtd.log")
	log := `2026-11-30 16:27:06.461+0000: 22009: debug : virCommandRunAsync:2606 : About to run LC_ALL=C /etc/libvirt/hooks/qemu.d/virtap g1 prepare begin -
2026-11-30 16:27:06.462+0000: 22010: debug : virCommandRunAsync:2606 : About to run LC_ALL=C /etc/libvirt/hooks/qemu.d/virtap g2 prepare begin -
2026-11-30 16:27:06.470+0000: 22010: debug : virCommandRun:2450 : Result status 0, stdout: '' stderr: 'other'
2026-11-30 16:27:06.471+0000: 22009: debug : virCommandRun:2450 : Result status 1, stdout: '' stderr: 'virtap: boom'
`
	if err := os.WriteFile(p, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	got := HookOutput(p, "g1")
	if want := "virtap: boom"; !strings.Contains(got, want) || strings.Contains(got, "other") {
		t.Fatalf("HookOutput = %q, want the g1 run with %q only", got, want)
	}
}
