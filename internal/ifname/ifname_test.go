package ifname

import (
	"strconv"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	for _, ok := range []string{"eth0", "enp3s0f0v1", "br-lan.42", strings.Repeat("a", 15), "vt-x_y"} {
		if err := Validate(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", strings.Repeat("a", 16), "a/b", "a:1", "a b", "a\tb", "a\nb", "a\x00b"} {
		if err := Validate(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestVLAN(t *testing.T) {
	for _, c := range []struct {
		parent string
		id     int
		want   string
	}{{"eth0", 10, "eth0.10"}, {"enp3s0f0", 4094, "enp3s0f0.4094"}, {"enp3s0f0np0", 4094, ""}, {"abcdefghijklmno", 1, ""}} {
		got := VLAN(c.parent, c.id)
		if err := Validate(got); err != nil {
			t.Errorf("VLAN(%q, %d) = %q: %v", c.parent, c.id, got, err)
		}
		if c.want != "" && got != c.want {
			t.Errorf("VLAN(%q, %d) = %q, want %q", c.parent, c.id, got, c.want)
		}
		if c.want == "" && (!strings.HasPrefix(got, "vtv") || !strings.HasSuffix(got, "."+strconv.Itoa(c.id)) || got != VLAN(c.parent, c.id)) {
			t.Errorf("VLAN(%q, %d) = %q, want a stable vtv<hash>.%d", c.parent, c.id, got, c.id)
		}
	}
	if VLAN("enp3s0f0np0", 10) == VLAN("enp3s0f0np1", 10) {
		t.Error("two long parents share a VLAN device name")
	}
}
