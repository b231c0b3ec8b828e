package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtap/virtap/internal/virt"
	"github.com/virtap/virtap/provision/domain"
)

// virtap addr against libvirt's test driver (the end-to-end suite runs it
// against a real guest): a stopped guest's extras go into the store and
// the persistent definition's record; bad requests change neither.
func TestAddrThroughTheAPI(t *testing.T) {
	// The test driver's default host lives while a connection is open.
	keep, err := virt.Connect("test:///default")
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.toml")
	os.WriteFile(pol, []byte(`[networks.lan]
kind = "macvtap"
parent = "eth0"
trust = "untrusted"
[networks.pool]
kind = "ipvtap"
parent = "eth1"
parent_mac = "02:00:00:00:00:01"
addresses = "198.51.100.0/24"
range = "198.51.100.100-198.51.100.199"
gateway = "198.51.100.1"
max_extra_addresses = 4
[guests.ag2]
addresses = { lan = "192.0.2.70" }
`), 0o600)
	state := filepath.Join(dir, "state")
	base := []string{"--policy", pol, "--state-dir", state}
	for _, name := range []string{"ag1", "ag2"} {
		guest := filepath.Join(dir, name+".xml")
		os.WriteFile(guest, []byte("<domain type='test'><name>"+name+"</name><memory>65536</memory><os><type arch='x86_64'>hvm</type></os><devices><interface type='network'><source network='lan'/></interface><interface type='network'><source network='pool'/></interface></devices></domain>"), 0o600)
		if code, _, e := capture(t, append(base, "define", "--connect", "test:///default", guest)...); code != 0 {
			t.Fatalf("define %s: %s", name, e)
		}
	}
	addr := func(args ...string) (int, string, string) {
		return capture(t, append(append(base, "addr"), append(args, "--connect", "test:///default")...)...)
	}
	list := func() []extraView {
		code, out, e := addr("list", "ag1", "--format", "json")
		if code != 0 {
			t.Fatalf("addr list: %s", e)
		}
		var rows []extraView
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return rows
	}
	added := func() string {
		def, err := keep.Lookup("ag1", false)
		if err != nil || def.Config == "" {
			t.Fatalf("lookup: %v (persistent: %v)", err, def.Config != "")
		}
		rec, _, err := domain.ParseRecord([]byte(def.Config))
		if err != nil || rec == nil {
			t.Fatalf("record: %v", err)
		}
		var out []string
		for _, ir := range rec.Interfaces {
			if ir.Added != "" {
				out = append(out, ir.Network+"="+ir.Added)
			}
		}
		return strings.Join(out, " ")
	}

	if code, out, e := addr("add", "ag1", "lan", "192.0.2.50"); code != 0 || !strings.Contains(out, "at its next start") {
		t.Fatalf("add: %d %q %s", code, out, e)
	}
	if code, _, e := addr("add", "ag1", "pool", "198.51.100.60/31"); code != 0 {
		t.Fatalf("add a prefix: %s", e)
	}
	if got := added(); got != "lan=192.0.2.50/32 pool=198.51.100.60/31" {
		t.Fatalf("persistent record: %q", got)
	}
	if rows := list(); len(rows) != 2 || rows[0].Address != "192.0.2.50/32" || rows[0].Source != "added" {
		t.Fatalf("list: %+v", rows)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "nosuch", "lan", "192.0.2.51"}, "no such domain"},
		{[]string{"add", "ag1", "nosuch", "192.0.2.51"}, `network "nosuch" is not in`},
		{[]string{"add", "ag1", "lan", "192.0.2.x"}, "is not an address"},
		{[]string{"add", "ag1", "lan", "224.0.0.5"}, "cannot be a guest's source address"},
		{[]string{"add", "ag1", "pool", "203.0.113.5"}, "outside network \"pool\"'s addresses"},
		{[]string{"add", "ag1", "pool", "198.51.100.150"}, "dynamic range"},
		{[]string{"add", "ag1", "pool", "198.51.100.1"}, "gateway"},
		{[]string{"add", "ag1", "lan", "192.0.2.70"}, "already guest ag2"},
		{[]string{"add", "ag1", "pool", "198.51.100.64/30"}, "max_extra_addresses = 4"},
		{[]string{"add", "ag1", "pool", "198.51.100.64/29"}, "max_extra_addresses = 4"},
		{[]string{"add", "ag2", "lan", "192.0.2.50"}, "already guest ag1"},
		{[]string{"del", "ag1", "lan", "192.0.2.99"}, "is not an extra address"},
	} {
		code, _, e := addr(c.args...)
		if code == 0 || !strings.Contains(e, c.want) {
			t.Errorf("addr %s: exit %d, %q; want an error saying %q", strings.Join(c.args, " "), code, e, c.want)
		}
	}
	if got := added(); got != "lan=192.0.2.50/32 pool=198.51.100.60/31" {
		t.Fatalf("bad requests changed the record: %q", got)
	}
	if rows := list(); len(rows) != 2 {
		t.Fatalf("bad requests changed the state: %+v", rows)
	}
	if code, _, e := addr("del", "ag1", "lan", "192.0.2.50"); code != 0 {
		t.Fatalf("del: %s", e)
	}
	if got := added(); got != "pool=198.51.100.60/31" {
		t.Fatalf("after del, the record: %q", got)
	}
	if rows := list(); len(rows) != 1 {
		t.Fatalf("after del: %+v", rows)
	}
}
