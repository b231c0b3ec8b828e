package provision

import (
	"encoding/xml"
	"fmt"
	"reflect"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/virtap/virtap/provision/domain"
)

// FieldChange is one attribute of virtap's record that the current policy
// sets otherwise.
type FieldChange struct {
	Field string `json:"field"`
	Was   string `json:"was"`
	Now   string `json:"now"`
}

func (f FieldChange) String() string { return fmt.Sprintf("%s %q -> %q", f.Field, f.Was, f.Now) }

// IfaceChange is what provisioning again changes in one managed interface.
type IfaceChange struct {
	MAC     string        `json:"mac"`
	Network string        `json:"network"`
	Fields  []FieldChange `json:"fields,omitempty"` // record attributes that change
	Element bool          `json:"element"`          // the <interface> element changes
	Added   bool          `json:"added,omitempty"`  // newly managed (not in the record before)
	Gone    bool          `json:"gone,omitempty"`   // its network is no longer in the policy
}

func (c IfaceChange) String() string {
	var parts []string
	for _, f := range c.Fields {
		parts = append(parts, f.String())
	}
	switch {
	case c.Gone:
		parts = append(parts, fmt.Sprintf("network %q is gone from the policy", c.Network))
	case c.Added:
		parts = append(parts, "newly managed")
	case len(parts) == 0 && c.Element:
		parts = append(parts, "the <interface> element")
	}
	return fmt.Sprintf("interface %s (network %s): %s", c.MAC, c.Network, strings.Join(parts, ", "))
}

// Reprovisioned is a defined document provisioned again against the
// current policy.
type Reprovisioned struct {
	*Result
	// Changes lists the managed interfaces that change; empty when the
	// document already matches the policy (then XML is the input itself).
	Changes []IfaceChange
}

// Reprovision provisions an already provisioned (e.g. libvirt's persistent)
// document again. Unlike ProvisionDoc it rewrites only the interfaces whose
// element really changes (compared as libvirt XML, not as bytes, since
// libvirt formats documents its own way) and the record only when it
// changes, so a document that matches the policy comes back unchanged.
func Reprovision(d *domain.Doc, opts Options) (*Reprovisioned, error) {
	pl, err := plan(d, opts)
	if err != nil {
		return nil, err
	}
	repl, plans, rec := pl.repl, pl.plans, pl.rec
	elem := map[string]bool{} // MAC -> its element changes
	for idx, def := range repl {
		orig, err := d.Interfaces[idx].Load()
		if err != nil {
			return nil, err
		}
		if sameInterface(orig, def) {
			delete(repl, idx)
			continue
		}
		elem[strings.ToLower(def.MAC.Address)] = true
	}
	changes := recordChanges(d.Record, rec, elem)
	if d.Record != nil && rec.Host == d.Record.Host && len(changes) == 0 && len(rec.Interfaces) == len(d.Record.Interfaces) {
		rec = d.Record // unchanged: keep libvirt's bytes
	}
	out := d.Raw
	if len(repl) > 0 || rec != d.Record {
		if out, err = d.Render(repl, rec); err != nil {
			return nil, err
		}
	}
	return &Reprovisioned{Result: &Result{XML: out, Plans: plans, Record: rec, Doc: d, Unknown: pl.unknown}, Changes: changes}, nil
}

// sameInterface compares two interface definitions as libvirt XML.
func sameInterface(a, b *libvirtxml.DomainInterface) bool {
	x, errA := xml.Marshal(a)
	y, errB := xml.Marshal(b)
	return errA == nil && errB == nil && string(x) == string(y)
}

// recordChanges compares the record's interfaces, by MAC; elem names the
// interfaces whose element changes.
func recordChanges(old, now *domain.Record, elem map[string]bool) []IfaceChange {
	var out []IfaceChange
	for _, n := range now.Interfaces {
		c := IfaceChange{MAC: n.MAC, Network: n.Network, Element: elem[strings.ToLower(n.MAC)]}
		if o, ok := old.ByMAC(n.MAC); ok {
			c.Fields = FieldChanges(o, n)
		} else {
			c.Added = true
		}
		if c.Added || c.Element || len(c.Fields) > 0 {
			out = append(out, c)
		}
	}
	return out
}

// FieldChanges lists the record attributes (by their XML names) that
// differ between two records of one interface.
func FieldChanges(was, now domain.IfaceRecord) []FieldChange {
	var out []FieldChange
	a, b := reflect.ValueOf(was), reflect.ValueOf(now)
	t := a.Type()
	for i := 0; i < t.NumField(); i++ {
		x, y := fmt.Sprint(a.Field(i).Interface()), fmt.Sprint(b.Field(i).Interface())
		if t.Field(i).Name == "MAC" {
			x, y = strings.ToLower(x), strings.ToLower(y)
		}
		if x == y {
			continue
		}
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("xml"), ",")
		out = append(out, FieldChange{Field: name, Was: blankZero(a.Field(i)), Now: blankZero(b.Field(i))})
	}
	return out
}

func blankZero(v reflect.Value) string {
	if v.IsZero() {
		return ""
	}
	return fmt.Sprint(v.Interface())
}

// Drift lists the managed interfaces of a defined domain whose record no
// longer matches the current policy: networks gone from it (Gone), or
// attributes it now sets otherwise. It changes nothing and asks no fleet
// store. virtap define --domain NAME applies what it finds.
func Drift(d *domain.Doc, opts Options) ([]IfaceChange, error) {
	if d.Record == nil {
		return nil, nil
	}
	var gone []IfaceChange
	for _, ir := range d.Record.Interfaces {
		_, ok, err := opts.Policy.Network(opts.Host, ir.Network)
		if err != nil {
			return nil, err
		}
		if !ok {
			gone = append(gone, IfaceChange{MAC: ir.MAC, Network: ir.Network, Gone: true})
		}
	}
	if len(gone) > 0 {
		return gone, nil
	}
	opts.Fleet = nil
	rp, err := Reprovision(d, opts)
	if err != nil {
		return nil, err
	}
	return rp.Changes, nil
}
