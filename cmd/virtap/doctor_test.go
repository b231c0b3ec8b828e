package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtap/virtap/doctor"
	"github.com/virtap/virtap/hooks"
	"github.com/virtap/virtap/internal/nstest"
	"github.com/virtap/virtap/vepa"
)

// Probe devices in test namespaces take fresh indexes: /dev/tapN is global.
func init() { vepa.ProbeIndex = nstest.FreshIndex }

// runDoctor runs "virtap doctor ARGS" as main would and returns stdout and
// the exit code.
func runDoctor(t *testing.T, a ...string) (string, int) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(append([]string{"doctor"}, a...))
	err := root.Execute()
	code := 0
	var ee exitError
	var ue usageError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.code
	case errors.As(err, &ue):
		code = 2
	default:
		t.Logf("error: %v", err)
		code = 1
	}
	return out.String(), code
}

// doctorFiles writes a policy with one VEPA network on parent and a hooks
// directory holding a (fake) virtap hook; it returns the common flags.
func doctorFiles(t *testing.T, parent string) []string {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(pol, []byte("[networks.lan]\nkind = \"macvtap\"\nparent = \""+parent+"\"\nmode = \"vepa\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hd := filepath.Join(dir, "hooks")
	if err := os.MkdirAll(filepath.Join(hd, "qemu.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hooks.HookPath(hd), []byte("fake "+hooks.BinaryMarker), 0o755); err != nil {
		t.Fatal(err)
	}
	doms := filepath.Join(dir, "domains") // sealed off from the host's /etc/libvirt/qemu
	if err := os.MkdirAll(doms, 0o755); err != nil {
		t.Fatal(err)
	}
	// libvirt's test driver, not the host's daemon: guests that other test
	// packages run at the same time (go test runs packages in parallel)
	// must not show up in this doctor's report.
	return []string{"--policy", pol, "--state-dir", filepath.Join(dir, "state"), "--hooks-dir", hd, "--domains-dir", doms, "--connect", "test:///default"}
}

func TestDoctorCommandHairpin(t *testing.T) {
	for _, hairpin := range []bool{true, false} {
		name := "reflects"
		if !hairpin {
			name = "does-not-reflect"
		}
		t.Run(name, func(t *testing.T) {
			ns := nstest.New(t)
			s := nstest.NewSwitched(t, ns, hairpin)
			out, code := runDoctor(t, append(doctorFiles(t, s.Uplink), "--json")...)
			var rep doctor.Report
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			hp := rep.Find(doctor.CheckHairpin, "lan")
			if len(hp) != 1 {
				t.Fatalf("hairpin results %+v", hp)
			}
			if hairpin {
				if hp[0].Status != doctor.OK || !strings.Contains(hp[0].Detail, "reflects") || code != 0 || rep.Failed {
					t.Fatalf("hairpin on: exit %d, %+v\n%s", code, hp[0], out)
				}
			} else {
				if hp[0].Status != doctor.Fail || !strings.Contains(hp[0].Detail, "does not reflect") || code != 1 {
					t.Fatalf("hairpin off: exit %d, %+v\n%s", code, hp[0], out)
				}
			}
		})
	}
}

func TestDoctorCommandTable(t *testing.T) {
	ns := nstest.New(t)
	ns.Veth(t, "up0", "up0p", nil)
	flags := doctorFiles(t, "up0")
	out, code := runDoctor(t, append(flags, "--no-probe")...)
	if code != 0 || !strings.HasPrefix(out, "NETWORK") || !strings.Contains(out, "reflective-relay probe turned off") || strings.Contains(out, "\x1b[") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	out, code = runDoctor(t, "--policy", filepath.Join(t.TempDir(), "missing.toml"), "--no-probe")
	if code != 1 || !strings.Contains(out, "policy") || !strings.Contains(out, "FAILED") {
		t.Fatalf("missing policy: exit %d:\n%s", code, out)
	}
	if _, code = runDoctor(t, "extra-arg"); code != 2 {
		t.Fatalf("an argument: exit %d", code)
	}
}

// Networks that cannot share a parent fail doctor, naming both, as they
// fail policy check.
func TestDoctorParentConflict(t *testing.T) {
	flags := doctorFiles(t, "eth0")
	pol := flags[1]
	for _, c := range []struct{ policy, want string }{
		{"[networks.lan]\nkind = \"macvtap\"\nparent = \"eth0\"\n[networks.edge]\nkind = \"ipvtap\"\nparent = \"eth0\"\nparent_mac = \"52:54:00:00:00:01\"\n",
			`macvtap network "lan" and ipvtap network "edge" share parent eth0`},
		{"[networks.a]\nkind = \"ipvtap\"\nparent = \"eth0\"\nmode = \"l2\"\n[networks.b]\nkind = \"ipvtap\"\nparent = \"eth0\"\nmode = \"l3\"\n",
			`ipvtap networks "a" (mode l2) and "b" (mode l3) share parent eth0`},
	} {
		if err := os.WriteFile(pol, []byte(c.policy), 0o644); err != nil {
			t.Fatal(err)
		}
		out, code := runDoctor(t, append(flags, "--no-probe")...)
		if code != 1 || !strings.Contains(out, c.want) {
			t.Errorf("doctor: exit %d, want 1 and %q:\n%s", code, c.want, out)
		}
		code, _, errOut := capture(t, "policy", "check", pol)
		if code != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("policy check: exit %d, want 1 and %q:\n%s", code, c.want, errOut)
		}
	}
}
