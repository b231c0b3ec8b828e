package harness

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/test/internal/run"
)

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if nstest.InCI() {
			t.Fatalf("%s not installed (CI=true: not skipping)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func TestFixQemuConf(t *testing.T) {
	out, changed := fixQemuConf("")
	if !changed {
		t.Fatal("empty conf: no change")
	}
	for _, kv := range qemuSettings {
		if !strings.Contains(out, kv[0]+" = "+kv[1]+"\n") {
			t.Errorf("missing %s in:\n%s", kv[0], out)
		}
	}
	if again, ch := fixQemuConf(out); ch || again != out {
		t.Errorf("second pass changed the file:\n%s", again)
	}

	// An operator's file: comments kept, a matching setting kept, a wrong
	// one (a multi-line list) commented out whole, the rest appended.
	op := "# operator\nvnc_listen = \"0.0.0.0\"\nuser = \"root\"\ncgroup_controllers = [ \"cpu\",\n   \"memory\" ]\nsecurity_driver = \"apparmor\"  # mine\n"
	out, changed = fixQemuConf(op)
	if !changed {
		t.Fatal("operator conf: no change")
	}
	for _, s := range []string{"# operator\n", "vnc_listen = \"0.0.0.0\"\n", qemuConfMarker + "cgroup_controllers = [ \"cpu\",\n", qemuConfMarker + "   \"memory\" ]\n", qemuConfMarker + "security_driver = \"apparmor\""} {
		if !strings.Contains(out, s) {
			t.Errorf("want %q in:\n%s", s, out)
		}
	}
	if n := strings.Count(out, "\nuser = \"root\""); n != 1 {
		t.Errorf("user set %d times:\n%s", n, out)
	}
	for _, kv := range qemuSettings {
		n := 0
		for _, l := range strings.Split(out, "\n") {
			if k, v, ok := confAssignment(l); ok && k == kv[0] {
				n++
				if normConf(v) != normConf(kv[1]) {
					t.Errorf("%s = %s survives", k, v)
				}
			}
		}
		if n != 1 {
			t.Errorf("%s assigned %d times", kv[0], n)
		}
	}
	if _, ch := fixQemuConf(out); ch {
		t.Error("not idempotent on an operator's file")
	}
}

func TestEnsureQemuConfBacksUpOnce(t *testing.T) {
	p := filepath.Join(t.TempDir(), "qemu.conf")
	orig := "user = \"qemu\"\n"
	if err := os.WriteFile(p, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if ch, err := EnsureQemuConf(p); err != nil || !ch {
		t.Fatalf("changed=%v err=%v", ch, err)
	}
	if ch, err := EnsureQemuConf(p); err != nil || ch {
		t.Fatalf("second run: changed=%v err=%v", ch, err)
	}
	if b, _ := os.ReadFile(p + ".virtap-orig"); string(b) != orig {
		t.Errorf("backup holds %q", b)
	}
}

func TestGuestXMLIsValidAndCarriesEverything(t *testing.T) {
	cfg := GuestConfig{IP: "192.0.2.10/24", Peers: []string{"192.0.2.1", "192.0.2.11"}, Tries: 3, Post: "echo a && echo <b>\n"}
	x := GuestXML("g1", "3c1e7a59-5f5e-4b43-9d8b-0ad1a4f1e7a2", "/k/vmlinuz", "/k/initrd & co", cfg.Cmdline(), "/tmp/s.log",
		DirectInterface("up0", "vepa", "52:54:00:00:00:01"), NetworkInterface("lan", ""))
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		t.Fatalf("%v\n%s", err, x)
	}
	if d.Type != "qemu" || d.Memory.Value != 256 || d.Memory.Unit != "MiB" || d.VCPU.Value != 1 {
		t.Errorf("type/memory/vcpu: %s %+v %+v", d.Type, d.Memory, d.VCPU)
	}
	if d.OS.Type.Arch != "x86_64" || d.OS.Type.Machine != "pc" || d.OS.Kernel != "/k/vmlinuz" || d.OS.Initrd != "/k/initrd & co" {
		t.Errorf("os: %+v", d.OS)
	}
	if !strings.HasPrefix(d.OS.Cmdline, "console=ttyS0 ") || !strings.Contains(d.OS.Cmdline, "virtap.peers=192.0.2.1,192.0.2.11") {
		t.Errorf("cmdline %q", d.OS.Cmdline)
	}
	if len(d.Devices.Disks) != 0 || len(d.Devices.Serials) != 1 || d.Devices.Serials[0].Source.File.Path != "/tmp/s.log" {
		t.Errorf("devices: disks %d serials %+v", len(d.Devices.Disks), d.Devices.Serials)
	}
	ifs := d.Devices.Interfaces
	if len(ifs) != 2 || ifs[0].Source.Direct.Dev != "up0" || ifs[0].Source.Direct.Mode != "vepa" || ifs[0].MAC.Address != "52:54:00:00:00:01" || ifs[1].Source.Network.Network != "lan" {
		t.Errorf("interfaces: %s", x)
	}
	// The post script survives the trip through the command line.
	for _, f := range strings.Fields(d.OS.Cmdline) {
		if v, ok := strings.CutPrefix(f, "virtap.post="); ok {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil || string(b) != cfg.Post {
				t.Errorf("post script %q (%v)", b, err)
			}
		}
	}
	if len(d.OS.Cmdline) > 2000 {
		t.Errorf("command line %d bytes, the x86 kernel keeps 2048", len(d.OS.Cmdline))
	}

	validate := needTool(t, "virt-xml-validate")
	p := filepath.Join(t.TempDir(), "g.xml")
	if err := os.WriteFile(p, []byte(x), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run.Cmd(30*time.Second, validate, p, "domain"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestWaitSerial(t *testing.T) {
	p := filepath.Join(t.TempDir(), "serial")
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = os.WriteFile(p, []byte("noise\r\nVIRTAP-PING 192.0.2.1 OK\r\nVIRTAP-LOOP 1 192.0.2.1 FAIL\nVIRTAP-LOOP 2 192.0.2.1 OK\n"), 0o644)
	}()
	l, err := WaitSerial(p, `^VIRTAP-PING 192\.0\.2\.1 (OK|FAIL)$`, 5*time.Second)
	if err != nil || l != "VIRTAP-PING 192.0.2.1 OK" {
		t.Fatalf("%q %v", l, err)
	}
	if _, err := WaitSerial(p, `^VIRTAP-DONE$`, 300*time.Millisecond); err == nil {
		t.Fatal("found a line that is not there")
	}
	off := int64(strings.Index(mustRead(t, p), "VIRTAP-LOOP 2"))
	if l, err := WaitSerialAfter(p, off, `^VIRTAP-LOOP \d+ `, time.Second); err != nil || !strings.HasPrefix(l, "VIRTAP-LOOP 2") {
		t.Fatalf("after offset: %q %v", l, err)
	}
	if got, err := WaitSerialCount(p, 0, `^VIRTAP-LOOP`, 2, time.Second); err != nil || len(got) != 2 {
		t.Fatalf("count: %q %v", got, err)
	}
	_ = os.WriteFile(p, []byte("Kernel panic - not syncing: Attempted to kill init!\n"), 0o644)
	start := time.Now()
	if _, err := WaitSerial(p, `^VIRTAP-DONE$`, 10*time.Second); err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("panic not noticed early: %v after %s", err, time.Since(start))
	}
}

func mustRead(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
