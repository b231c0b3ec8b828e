package policy

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/virtap/virtap/internal/suggest"
)

// rawNetwork is a network table as written: nil means "not set here".
//
// Each field declares its key once: the toml tag names it, the kinds tag
// lists the kinds of network it belongs to (none: every kind, or checked by
// hand in resolve), and the README documents it (a test checks that every
// key listed by NetworkKeys is there). merge, NetworkKeys, the "unknown key"
// message and the "does not apply to kind" check all read these tags, so a
// new key is this one line plus what resolve does with its value.
type rawNetwork struct {
	Kind                *string      `toml:"kind"`
	Parent              *string      `toml:"parent" kinds:"macvtap,ipvtap"`
	ParentMAC           *string      `toml:"parent_mac" kinds:"ipvtap"`
	Mode                *string      `toml:"mode"`
	Flag                *string      `toml:"flag" kinds:"ipvtap"`
	Bridge              *string      `toml:"bridge" kinds:"bridge"`
	PF                  *string      `toml:"pf" kinds:"passthrough"`
	Devices             *[]string    `toml:"devices" kinds:"passthrough"`
	Vhost               *string      `toml:"vhost"`
	Queues              *queues      `toml:"queues"`
	MTU                 *int         `toml:"mtu"`
	Model               *string      `toml:"model"`
	Trust               *string      `toml:"trust"`
	TrustGuestRxFilters *bool        `toml:"trust_guest_rx_filters" kinds:"macvtap"`
	HostAccess          *string      `toml:"host_access" kinds:"macvtap,ipvtap"`
	OnLink              *bool        `toml:"on_link" kinds:"ipvtap"`
	VLAN                *int         `toml:"vlan"`
	SpoofChk            *bool        `toml:"spoofchk" kinds:"passthrough"`
	MaxTxRate           *int         `toml:"max_tx_rate" kinds:"passthrough"`
	MaxMACs             *int         `toml:"max_macs" kinds:"macvtap,ipvtap"`
	MaxExtraAddresses   *int         `toml:"max_extra_addresses" kinds:"macvtap,ipvtap"`
	Addresses           *string      `toml:"addresses" kinds:"ipvtap"`
	Learn               *string      `toml:"learn" kinds:"macvtap,ipvtap"`
	Range               *string      `toml:"range" kinds:"ipvtap"`
	Gateway             *string      `toml:"gateway" kinds:"ipvtap"`
	VirtualPort         *VirtualPort `toml:"virtualport" kinds:"macvtap"`
	Bandwidth           *Bandwidth   `toml:"bandwidth"`
}

type rawHost struct {
	Networks map[string]*rawNetwork `toml:"networks"`
}

type rawPolicy struct {
	StateDir  *string                `toml:"state_dir"`
	MACPrefix *string                `toml:"mac_prefix"`
	Networks  map[string]*rawNetwork `toml:"networks"`
	Hosts     map[string]*rawHost    `toml:"hosts"`
	Guests    map[string]*Guest      `toml:"guests"`
	Fleet     *Fleet                 `toml:"fleet"`
}

// queues is "auto" or a number.
type queues struct {
	n    int
	auto bool
}

func (q *queues) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		if x == "auto" {
			q.n, q.auto = 0, true
			return nil
		}
		if n, err := strconv.Atoi(x); err == nil {
			q.n = n
			return nil
		}
	case int64:
		q.n = int(x)
		return nil
	}
	return fmt.Errorf("queues must be \"auto\" or a number from 1 to 256, not %v", v)
}

// TopKeys are the keys and tables a policy may hold at the top.
var TopKeys = []string{"state_dir", "mac_prefix", "networks", "hosts", "guests", "fleet"}

// GuestKeys are the keys of a [guests.NAME] section.
var GuestKeys = []string{"uuid", "trust", "addresses"}

// keysAt returns the keys allowed where k stands and how to say so: the
// registry behind "unknown key" and its "did you mean".
func keysAt(k toml.Key) (where string, keys []string) {
	sub := func(name string) (string, []string) {
		switch name {
		case "virtualport":
			return "allowed in virtualport: " + strings.Join(tableKeys[VirtualPort](), ", "), tableKeys[VirtualPort]()
		case "bandwidth":
			return "allowed in bandwidth: " + strings.Join(tableKeys[Bandwidth](), ", "), tableKeys[Bandwidth]()
		}
		return "", nil
	}
	switch {
	case len(k) == 1:
		return "allowed at the top: state_dir, mac_prefix, [networks.NAME], [hosts.NAME.networks.NAME], [guests.NAME], [fleet]", TopKeys
	case k[0] == "fleet":
		return "allowed in [fleet]: " + strings.Join(tableKeys[Fleet](), ", "), tableKeys[Fleet]()
	case k[0] == "guests":
		return "allowed in a guest section: uuid, trust, addresses = { NETWORK = \"ADDRESS\" or [\"ADDRESS\", ...] }", GuestKeys
	case k[0] == "hosts" && len(k) == 3:
		return "a host section holds only [hosts.NAME.networks.NAME]", []string{"networks"}
	case k[0] == "networks" && len(k) == 4, k[0] == "hosts" && len(k) == 6:
		if where, keys := sub(k[len(k)-2]); keys != nil {
			return where, keys
		}
	}
	keys = make([]string, 0, len(NetworkKeys()))
	for _, nk := range NetworkKeys() {
		keys = append(keys, strings.Trim(nk, "[]"))
	}
	return "allowed in a network: " + strings.Join(NetworkKeys(), ", "), keys
}

// unknownKeys reports the keys the schema does not know, with the closest
// known key of that table. A key under a mistyped table ([network.lan]) is
// reported once, as the table's name.
func (ps *parser) unknownKeys(undecoded []toml.Key) {
	seen := map[string]bool{}
	for _, k := range undecoded {
		k = k[:firstUnknown(k)+1]
		if seen[k.String()] {
			continue
		}
		seen[k.String()] = true
		where, keys := keysAt(k)
		hint := ""
		if s, ok := suggest.Closest(k[len(k)-1], keys); ok {
			hint = fmt.Sprintf(" did you mean %q?", s)
		}
		ps.add(k, "unknown key;%s %s", hint, where)
	}
}

// firstUnknown is the index of the first part of k that the schema does
// not allow there (names of networks, hosts and guests are free); the last
// part when every earlier one is known.
func firstUnknown(k toml.Key) int {
	for i := range len(k) - 1 {
		name := i == 1 || k[0] != "networks" && i == 3
		if name {
			continue
		}
		if _, keys := keysAt(k[:i+1]); !slices.Contains(keys, k[i]) {
			return i
		}
	}
	return len(k) - 1
}

// NetworkKeys lists every key a network table may hold, tables in brackets.
func NetworkKeys() []string {
	var keys []string
	for _, f := range reflect.VisibleFields(reflect.TypeFor[rawNetwork]()) {
		k := tomlName(f)
		if f.Type.Elem().Kind() == reflect.Struct && f.Type.Elem() != reflect.TypeFor[queues]() {
			k = "[" + k + "]"
		}
		keys = append(keys, k)
	}
	return keys
}

// tableKeys lists the keys of a sub-table such as [virtualport].
func tableKeys[T any]() []string {
	var keys []string
	for _, f := range reflect.VisibleFields(reflect.TypeFor[T]()) {
		keys = append(keys, tomlName(f))
	}
	return keys
}

func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	return name
}

// kindOnly fails every key set in r that does not belong to kind (the
// kinds tag of its field).
func (v *validator) kindOnly(r *rawNetwork, kind string) {
	if kind == "" {
		return
	}
	rv := reflect.ValueOf(r).Elem()
	for i, f := range reflect.VisibleFields(rv.Type()) {
		tag := f.Tag.Get("kinds")
		if tag == "" || rv.Field(i).IsNil() {
			continue
		}
		kinds := strings.Split(tag, ",")
		if !slices.Contains(kinds, kind) {
			v.fail([]string{tomlName(f)}, "does not apply to kind %q; it belongs to kind %s", kind, strings.Join(quoteAll(kinds), " or "))
		}
	}
}

// merge overlays the keys set in over onto base.
func merge(base, over *rawNetwork) *rawNetwork {
	out := &rawNetwork{}
	if base != nil {
		*out = *base
	}
	if over == nil {
		return out
	}
	ov, dst := reflect.ValueOf(over).Elem(), reflect.ValueOf(out).Elem()
	for i := range ov.NumField() {
		if !ov.Field(i).IsNil() {
			dst.Field(i).Set(ov.Field(i))
		}
	}
	return out
}
