// Package mac derives deterministic, locally administered unicast MAC
// addresses, so the same guest interface gets the same MAC on every host
// without any coordination.
package mac

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
)

// Derive returns the MAC for the interface at index of the domain identified
// by seed (its UUID, or its name when it has none). prefix holds 0 to 3
// leading octets (already validated as locally administered unicast); the
// rest comes from SHA-256 of seed, index and attempt. Callers bump attempt
// to step past a MAC the domain already uses.
func Derive(seed string, index, attempt int, prefix []byte) net.HardwareAddr {
	h := sha256.New()
	h.Write([]byte("virtap-mac\x00"))
	h.Write([]byte(seed))
	var buf [16]byte
	binary.BigEndian.PutUint64(buf[:8], uint64(index))
	binary.BigEndian.PutUint64(buf[8:], uint64(attempt))
	h.Write(buf[:])
	sum := h.Sum(nil)
	out := make(net.HardwareAddr, 6)
	copy(out, sum[:6])
	copy(out, prefix)
	if len(prefix) == 0 {
		out[0] = out[0]&0xfc | 0x02 // locally administered, unicast
	}
	return out
}

// ParsePrefix turns "52:54:00" into its octets; "" gives none.
func ParsePrefix(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	var out []byte
	for _, p := range strings.Split(s, ":") {
		var b byte
		if _, err := fmt.Sscanf(p, "%02x", &b); err != nil || len(p) != 2 {
			return nil, fmt.Errorf("mac prefix %q: octets are two hex digits", s)
		}
		out = append(out, b)
	}
	if len(out) > 3 || out[0]&1 != 0 || out[0]&2 == 0 {
		return nil, fmt.Errorf("mac prefix %q: 1 to 3 octets, the first locally administered unicast", s)
	}
	return out, nil
}

// Normalize returns s in lowercase colon form, or an error naming it.
func Normalize(s string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("%q is not a MAC address such as 52:54:00:12:34:56", s)
	}
	return hw.String(), nil
}
