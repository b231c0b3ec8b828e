package hooks

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/provision/domain"
)

// FuzzHookInput feeds the hook's input decoding (libvirt's four arguments
// and the domain XML on standard input, both influenced by guest owners
// through names and XML) with arbitrary bytes. It must never panic, never
// accept more than domain.MaxSize, and whatever it accepts must carry a
// canonical UUID (the only key state and filter tables use) and device
// names that could not escape into a path.
func FuzzHookInput(f *testing.F) {
	u := uuid.MustParse("3c7a5a53-8f0e-4d6b-9a31-2b4f1c9d7e10")
	seeds := []string{
		"",
		"<domain/>",
		`<domain><name>x</name><uuid>` + u.String() + `</uuid></domain>`,
		`<domain type='qemu'><name>../../etc/passwd</name><uuid>` + u.String() + `</uuid><metadata>
<virtap:virtap xmlns:virtap="https://virtap.dev/xmlns/domain/1"><virtap:interface mac="52:54:00:12:34:56" network="lan" kind="macvtap" mode="bridge" parent="eth0" trust="untrusted"/></virtap:virtap>
</metadata><devices><interface type='direct'><mac address='52:54:00:12:34:56'/><source dev='eth0' mode='bridge'/><target dev='macvtap0'/></interface></devices></domain>`,
		`<domain><uuid>not-a-uuid</uuid><metadata><virtap:virtap xmlns:virtap="https://virtap.dev/xmlns/domain/1"/></metadata></domain>`,
		`<domain><uuid>` + strings.ToUpper(u.String()) + `</uuid><metadata><virtap:virtap xmlns:virtap="https://virtap.dev/xmlns/domain/1"><virtap:interface mac="zz" kind="ipvtap" device="a/../../b"/></virtap:virtap></metadata></domain>`,
		"<!DOCTYPE d [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]><domain>&b;</domain>",
	}
	for _, s := range seeds {
		f.Add("web start begin -", []byte(s))
	}
	f.Add("a\x00b prepare begin -", []byte(seeds[3]))
	f.Fuzz(func(t *testing.T, args string, input []byte) {
		fields := strings.Split(args, " ")
		req, err := ParseArgs(fields)
		if (err == nil) != (len(fields) == 4) || (err == nil && req.Op != fields[1]) {
			t.Fatalf("ParseArgs(%q) = %+v, %v", fields, req, err)
		}
		data, err := ReadInput(bytes.NewReader(input))
		if len(input) > domain.MaxSize {
			if err == nil {
				t.Fatalf("accepted %d bytes", len(input))
			}
			return
		}
		if err != nil || !bytes.Equal(data, input) {
			t.Fatalf("ReadInput changed or refused %d bytes: %v", len(input), err)
		}
		d, err := domain.Parse(data)
		if err != nil {
			return
		}
		g, err := host.NewGuest(d)
		if err != nil {
			return
		}
		if g.UUID == uuid.Nil && d.UUID != uuid.Nil.String() {
			t.Fatalf("uuid %q parsed to nil", d.UUID)
		}
		if s := g.UUID.String(); strings.ContainsAny(s, "/.\x00 ") || len(s) != 36 {
			t.Fatalf("uuid %q is not canonical", s)
		}
		if d.Record == nil {
			return
		}
		for _, ir := range d.Record.Interfaces {
			_ = host.Untrusted(ir)
			// A device name the hook would act on must pass the same
			// check the hook applies before using it.
			if netdev.ValidateName(ir.Device) == nil && strings.ContainsAny(ir.Device, "/\x00 \n:") {
				t.Fatalf("device name %q passes validation", ir.Device)
			}
		}
	})
}
