package domain

import (
	"bytes"
	"testing"
)

// FuzzParseRecord feeds the record parser (Parse and ParseRecord: the
// document scan, virtap's <metadata> record, the interfaces) arbitrary
// documents: it must return a record or an error, never panic, stay within
// the depth bound, and a record it returns must render and parse back to
// the same record.
func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`<domain><name>a</name><uuid>6f1c4e36-2d6b-4e59-9d0a-000000000001</uuid><metadata><virtap:virtap xmlns:virtap="https://virtap.dev/xmlns/domain/1" host="h"><virtap:interface mac="52:54:00:00:00:01" network="lan" kind="ipvtap" mode="l3" device="vtabc"/></virtap:virtap></metadata><devices><interface type='direct'><mac address='52:54:00:00:00:01'/><target dev='macvtap0'/></interface></devices></domain>`))
	f.Add([]byte(`<domain><name>b</name><metadata><virtap xmlns="https://virtap.dev/xmlns/domain/1"><interface mac="x" vlan="-1" mtu="99999999999999999999"/></virtap></metadata></domain>`))
	f.Add([]byte(`<domain><name>c</name><devices>` + "<a><a><a><a></a></a></a></a>" + `</devices></domain>`))
	f.Add(nested(300))
	f.Fuzz(func(t *testing.T, raw []byte) {
		rec, d, err := ParseRecord(raw)
		if err != nil {
			return
		}
		if d == nil {
			t.Fatal("no document and no error")
		}
		if rec == nil || len(rec.Interfaces) == 0 {
			return
		}
		out, err := d.Render(nil, rec)
		if err != nil {
			return // a document virtap cannot rewrite is refused, not mangled
		}
		rec2, _, err := ParseRecord(out)
		if err != nil {
			t.Fatalf("rendered record does not parse: %v\n%s", err, out)
		}
		if rec2 == nil || len(rec2.Interfaces) != len(rec.Interfaces) {
			t.Fatalf("record changed in a round trip:\n%s", out)
		}
		for i := range rec.Interfaces {
			if rec.Interfaces[i] != rec2.Interfaces[i] {
				t.Fatalf("interface %d changed: %+v -> %+v", i, rec.Interfaces[i], rec2.Interfaces[i])
			}
		}
		if !bytes.Contains(out, []byte(Namespace)) {
			t.Fatal("rendered record lost its namespace")
		}
	})
}
