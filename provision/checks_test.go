package provision

import (
	"strings"
	"testing"

	"github.com/virtap/virtap/provision/policy"
)

const checksPolicy = `[networks.lan]
kind = "macvtap"
parent = "eth0"
mtu = 9000
`

func checksPol(t *testing.T) *policy.Policy {
	t.Helper()
	pol, err := policy.Parse("p.toml", []byte(checksPolicy))
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// MACs that no NIC may have, or that two interfaces share, are errors
// naming the element's line and the fix.
func TestGivenMACsChecked(t *testing.T) {
	pol := checksPol(t)
	lan := func(m string) string {
		return "<interface type='network'><mac address='" + m + "'/><source network='lan'/></interface>"
	}
	for _, c := range []struct {
		ifaces []string
		want   string
	}{
		{[]string{lan("52:54:00:00:00:01"), lan("52:54:00:00:00:01")},
			"line 8: interface #1 (network \"lan\"): MAC 52:54:00:00:00:01 is given by interfaces #1 (line 8) and #2 (line 9); each interface needs its own"},
		{[]string{"<interface type='bridge'><mac address='52:54:00:00:00:02'/><source bridge='br0'/></interface>", lan("52:54:00:00:00:02")},
			"line 9: interface #2 (network \"lan\"): MAC 52:54:00:00:00:02 is given by interfaces #1 (line 8) and #2 (line 9)"},
		{[]string{lan("01:00:5e:00:00:01")}, "line 8: interface #1 (network \"lan\"): <mac address='01:00:5e:00:00:01'/> is a multicast (group) address, and a NIC needs a unicast one"},
		{[]string{lan("ff:ff:ff:ff:ff:ff")}, "is a multicast (group) address"},
		{[]string{lan("00:00:00:00:00:00")}, "is all zeros, which no NIC may use; remove it and virtap derives one"},
		{[]string{lan("52:54:00:zz:00:01")}, "<mac address='52:54:00:zz:00:01'/> is not a MAC address such as 52:54:00:12:34:56; correct it, or remove it"},
	} {
		_, err := Provision(guest(c.ifaces...), Options{Policy: pol, Host: "h"})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.ifaces, err, c.want)
		}
	}
}

// An interface on a network the policy lacks is kept and reported, with
// the closest policy network when it looks like a typo.
func TestUnknownNetworkReported(t *testing.T) {
	res, err := Provision(guest("lna", "default"), Options{Policy: checksPol(t), Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Unknown) != 2 || len(res.Plans) != 0 {
		t.Fatalf("unknown %v, plans %d", res.Unknown, len(res.Plans))
	}
	if got := res.Unknown[0].Error(); got != `domain XML line 8: interface #1 (network "lna"): network "lna" is not in p.toml for host "h"; did you mean 'lan'?` {
		t.Errorf("typo: %s", got)
	}
	if got := res.Unknown[1].Error(); strings.Contains(got, "did you mean") || res.Unknown[1].Network != "default" {
		t.Errorf("default: %s", got)
	}
}

// The guest's own <driver queues>, <driver name> and <mtu> win over the
// policy's automatic values; the record remembers them, so provisioning
// again keeps them while virtap's own values follow the policy.
func TestExplicitSettingsWin(t *testing.T) {
	pol := checksPol(t)
	in := strings.Replace(string(guest("<interface type='network'><source network='lan'/><model type='virtio'/><driver name='qemu' queues='4'/><mtu size='1400'/></interface>")), "<vcpu>2</vcpu>", "<vcpu>8</vcpu>", 1)
	res, err := Provision([]byte(in), Options{Policy: pol, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.XML)
	for _, want := range []string{`<driver name="qemu" queues="4"/>`, `<mtu size="1400"/>`, `mtu="1400" explicit="driver queues mtu"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
	again, err := Provision(res.XML, Options{Policy: pol, Host: "h"})
	if err != nil || string(again.XML) != out {
		t.Fatalf("not a fixed point (%v):\n%s", err, again.XML)
	}
	// Without explicit settings: virtap's values, and they follow the
	// domain (here its vCPUs) when provisioned again.
	in = strings.Replace(string(guest("<interface type='network'><source network='lan'/><model type='virtio'/></interface>")), "<vcpu>2</vcpu>", "<vcpu>8</vcpu>", 1)
	res, err = Provision([]byte(in), Options{Policy: pol, Host: "h"})
	if err != nil || !strings.Contains(string(res.XML), `queues="8"`) || !strings.Contains(string(res.XML), `<mtu size="9000"/>`) || strings.Contains(string(res.XML), "explicit=") {
		t.Fatalf("automatic values (%v):\n%s", err, res.XML)
	}
	fewer := strings.Replace(string(res.XML), "<vcpu>8</vcpu>", "<vcpu>2</vcpu>", 1)
	again, err = Provision([]byte(fewer), Options{Policy: pol, Host: "h"})
	if err != nil || !strings.Contains(string(again.XML), `queues="2"`) {
		t.Fatalf("virtap's queues did not follow the vCPUs (%v):\n%s", err, again.XML)
	}
}
