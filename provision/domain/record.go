package domain

import (
	"encoding/xml"
	"fmt"
	"reflect"
	"strings"
)

// Record is virtap's element under <metadata>: per managed interface (by
// MAC), the policy network it came from and everything the hook needs to
// realise it without reading the policy.
type Record struct {
	XMLName    xml.Name      `xml:"https://virtap.dev/xmlns/domain/1 virtap"`
	Host       string        `xml:"host,attr,omitempty"`
	Interfaces []IfaceRecord `xml:"https://virtap.dev/xmlns/domain/1 interface"`
}

// IfaceRecord describes one managed interface. Attribute order here is the
// order virtap writes.
type IfaceRecord struct {
	MAC        string `xml:"mac,attr"`
	Network    string `xml:"network,attr"`
	Kind       string `xml:"kind,attr"`
	Mode       string `xml:"mode,attr,omitempty"`
	Flag       string `xml:"flag,attr,omitempty"`
	Parent     string `xml:"parent,attr,omitempty"`
	Bridge     string `xml:"bridge,attr,omitempty"`
	Device     string `xml:"device,attr,omitempty"`
	PF         string `xml:"pf,attr,omitempty"`
	Devices    string `xml:"devices,attr,omitempty"` // space-separated pool members
	VLAN       int    `xml:"vlan,attr,omitempty"`
	SpoofChk   string `xml:"spoofchk,attr,omitempty"` // "on" | "off" (pools)
	MaxTxRate  int    `xml:"max_tx_rate,attr,omitempty"`
	Trust      string `xml:"trust,attr,omitempty"`
	HostAccess string `xml:"host_access,attr,omitempty"`
	OnLink     bool   `xml:"on_link,attr,omitempty"` // ipvtap l3: the host answers ARP/NDP for the guest's addresses
	Vhost      string `xml:"vhost,attr,omitempty"`   // on | off | auto as provisioned
	MTU        int    `xml:"mtu,attr,omitempty"`
	Addresses  string `xml:"addresses,attr,omitempty"` // ipvtap: the pool, CIDR
	Range      string `xml:"range,attr,omitempty"`     // ipvtap: FIRST-LAST of the pool to lease from
	Gateway    string `xml:"gateway,attr,omitempty"`
	Address    string `xml:"address,attr,omitempty"` // ipvtap: the guest's fixed address, if the policy gives one
	Fixed      string `xml:"fixed,attr,omitempty"`   // untrusted: the guest's other fixed addresses, space-separated
	Learn      string `xml:"learn,attr,omitempty"`   // untrusted: dhcp | none | open
	Leased     string `xml:"leased,attr,omitempty"`  // ipvtap in a fleet: the address leased fleet-wide at define time
	// Explicit lists the interface settings the guest's own XML gave
	// (driver, queues, mtu), which win over the policy's automatic values;
	// the others in the provisioned XML are virtap's and follow the policy.
	Explicit string `xml:"explicit,attr,omitempty"`
	Extra    string `xml:"extra,attr,omitempty"` // macvtap/ipvtap: the policy's extra addresses (nested containers), space-separated
	Added    string `xml:"added,attr,omitempty"` // macvtap/ipvtap: extra addresses added at run time (virtap addr), space-separated
}

// ByMAC returns the record of the interface with that MAC.
func (r *Record) ByMAC(mac string) (IfaceRecord, bool) {
	if r == nil {
		return IfaceRecord{}, false
	}
	mac = strings.ToLower(mac)
	for _, i := range r.Interfaces {
		if strings.ToLower(i.MAC) == mac {
			return i, true
		}
	}
	return IfaceRecord{}, false
}

// marshal writes the record with one interface per line; indent is the
// indentation of the record's own start tag.
func (r *Record) marshal(indent string) string { return r.write(indent, true) }

// write writes the record; ns: with virtap's prefix and its declaration,
// else with neither.
func (r *Record) write(indent string, ns bool) string {
	var b strings.Builder
	p := ""
	if ns {
		p = Prefix + ":"
		fmt.Fprintf(&b, "<%svirtap xmlns:%s=%q", p, Prefix, Namespace)
	} else {
		b.WriteString("<virtap")
	}
	if r.Host != "" {
		fmt.Fprintf(&b, " host=%s", attr(r.Host))
	}
	b.WriteString(">\n")
	for _, i := range r.Interfaces {
		fmt.Fprintf(&b, "%s  <%sinterface", indent, p)
		v := reflect.ValueOf(i)
		t := v.Type()
		for f := 0; f < t.NumField(); f++ {
			tag := t.Field(f).Tag.Get("xml")
			name, opts, _ := strings.Cut(tag, ",")
			val := v.Field(f)
			if strings.Contains(opts, "omitempty") && val.IsZero() {
				continue
			}
			fmt.Fprintf(&b, " %s=%s", name, attr(fmt.Sprint(val.Interface())))
		}
		b.WriteString("/>\n")
	}
	fmt.Fprintf(&b, "%s</%svirtap>", indent, p)
	return b.String()
}

func attr(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	_ = xml.EscapeText(&b, []byte(s))
	b.WriteByte('"')
	return b.String()
}

// ParseRecord finds virtap's record in a domain document; nil when absent.
func ParseRecord(raw []byte) (*Record, *Doc, error) {
	d, err := Parse(raw)
	if err != nil {
		return nil, nil, err
	}
	return d.Record, d, nil
}

// Element is the record as one element in no namespace, as libvirt's
// metadata API (virDomainSetMetadata) takes it: libvirt puts the element
// and its children into the namespace given with the call, and refuses an
// element that declares the prefix itself. "" for a nil or empty record.
func (r *Record) Element() string {
	if r == nil || len(r.Interfaces) == 0 {
		return ""
	}
	return r.write("", false)
}
