// Package ifname is the one check of a Linux interface name. It touches no
// kernel, so define time (provision/policy) and run time (internal/netdev,
// passthrough) share it.
package ifname

import (
	"fmt"
	"strings"
)

// MaxLen is the longest interface name Linux accepts (IFNAMSIZ-1).
const MaxLen = 15

// Validate checks that name can be a Linux interface name: 1 to 15 bytes,
// not "." or "..", no '/', ':', white space or NUL. Only such names are ever
// joined into a sysfs path or handed to netlink.
func Validate(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("invalid interface name %q", name)
	case len(name) > MaxLen:
		return fmt.Errorf("invalid interface name %q: %d characters, at most %d allowed", name, len(name), MaxLen)
	case strings.ContainsAny(name, "/: \t\n\x00"):
		return fmt.Errorf("invalid interface name %q: contains '/', ':', white space or NUL", name)
	}
	return nil
}
