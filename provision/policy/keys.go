package policy

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
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
	HostAccess          *string      `toml:"host_access" kinds:"macvtap"`
	VLAN                *int         `toml:"vlan"`
	SpoofChk            *bool        `toml:"spoofchk" kinds:"passthrough"`
	MaxTxRate           *int         `toml:"max_tx_rate" kinds:"passthrough"`
	MaxMACs             *int         `toml:"max_macs" kinds:"macvtap,ipvtap"`
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

func allowedHere(k toml.Key) string {
	switch {
	case len(k) == 1:
		return "allowed at the top: state_dir, mac_prefix, [networks.NAME], [hosts.NAME.networks.NAME], [guests.NAME], [fleet]"
	case k[0] == "fleet":
		return "allowed in [fleet]: " + tableKeys[Fleet]()
	case k[0] == "guests":
		return "allowed in a guest section: uuid, trust, addresses = { NETWORK = \"ADDRESS\" or [\"ADDRESS\", ...] }"
	case k[0] == "hosts" && len(k) == 3:
		return "a host section holds only [hosts.NAME.networks.NAME]"
	case len(k) >= 4 && k[len(k)-2] == "virtualport":
		return "allowed in virtualport: " + tableKeys[VirtualPort]()
	case len(k) >= 4 && k[len(k)-2] == "bandwidth":
		return "allowed in bandwidth: " + tableKeys[Bandwidth]()
	default:
		return "allowed in a network: " + strings.Join(NetworkKeys(), ", ")
	}
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
func tableKeys[T any]() string {
	var keys []string
	for _, f := range reflect.VisibleFields(reflect.TypeFor[T]()) {
		keys = append(keys, tomlName(f))
	}
	return strings.Join(keys, ", ")
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
