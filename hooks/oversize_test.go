package hooks

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/virtap/virtap/provision/domain"
)

// stopped/release with a domain XML over the size limit (live metadata
// grows) still frees the guest's device and pool member, by the UUID in
// the document's head; with no UUID in the head, by the name in argv.
func TestOversizeReleaseStillReleases(t *testing.T) {
	e := setup(t, 2)
	for i, op := range []string{"stopped", "release"} {
		u := uuid.New()
		x := e.guest("big"+op, u, "pool")
		if err := e.run("prepare", x); err != nil {
			t.Fatal(err)
		}
		if len(e.tagged()) != 1 {
			t.Fatalf("prepare made %d devices", len(e.tagged()))
		}
		pad := "<description>" + strings.Repeat("x", domain.MaxSize) + "</description>"
		big := bytes.Replace(x, []byte("</uuid>"), []byte("</uuid>\n  "+pad), 1)
		if i == 1 {
			// No UUID in the head: the name libvirt passes in argv.
			big = bytes.Replace(big, []byte("<uuid>"+u.String()+"</uuid>"), nil, 1)
		}
		if len(big) <= domain.MaxSize {
			t.Fatal("not oversized")
		}
		req := Request{Domain: "big" + op, Op: op, SubOp: "end", Extra: "-"}
		if err := Run(e.cfg, req, bytes.NewReader(big)); err != nil {
			t.Fatal(err)
		}
		if devs := e.tagged(); len(devs) != 0 {
			t.Fatalf("%s of an oversized XML left %+v", op, devs)
		}
		st := e.store()
		res, _ := st.Reservations("pool")
		doms, _ := st.Domains()
		st.Close()
		if len(res) != 0 || len(doms) != 0 {
			t.Fatalf("%s of an oversized XML left reservations %+v, records %+v", op, res, doms)
		}
	}
}

func TestUUIDFromHead(t *testing.T) {
	u := uuid.New()
	if got, ok := UUIDFromHead([]byte("<domain><name>a&lt;uuid&gt;</name>\n<uuid> " + u.String() + " </uuid>")); !ok || got != u {
		t.Fatalf("%v %v", got, ok)
	}
	late := append(bytes.Repeat([]byte(" "), headScan), []byte("<uuid>"+u.String()+"</uuid>")...)
	if _, ok := UUIDFromHead(late); ok {
		t.Fatal("scanned past the head")
	}
}
