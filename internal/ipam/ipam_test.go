package ipam

import (
	"net/netip"
	"testing"
)

func TestParseRange(t *testing.T) {
	a, b, err := ParseRange(" 192.0.2.10 - 192.0.2.20")
	if err != nil || a != netip.MustParseAddr("192.0.2.10") || b != netip.MustParseAddr("192.0.2.20") {
		t.Fatalf("got %v %v %v", a, b, err)
	}
	if !InRange(netip.MustParseAddr("192.0.2.10"), a, b) || !InRange(netip.MustParseAddr("192.0.2.20"), a, b) || InRange(netip.MustParseAddr("192.0.2.21"), a, b) {
		t.Fatal("InRange: the bounds are inside, the next address is not")
	}
	for _, bad := range []string{"", "192.0.2.10", "192.0.2.10-", "-192.0.2.1", "x-192.0.2.1", "192.0.2.1/24-192.0.2.9"} {
		if _, _, err := ParseRange(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}
