package ifname

import (
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
