package domain

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// nested is a domain document whose <devices> holds depth nested elements,
// about 7 bytes per level (150,000 levels: 1 MB).
func nested(depth int) []byte {
	var b bytes.Buffer
	b.WriteString("<domain type='kvm'>\n  <name>deep</name>\n  <uuid>6f1c4e36-2d6b-4e59-9d0a-000000000001</uuid>\n  <devices>\n")
	b.WriteString(strings.Repeat("<a>", depth))
	b.WriteString(strings.Repeat("</a>", depth))
	b.WriteString("\n  </devices>\n</domain>\n")
	return b.Bytes()
}

func TestDeepDocumentIsRefusedQuickly(t *testing.T) {
	raw := nested(150000)
	start := time.Now()
	_, err := Parse(raw)
	took := time.Since(start)
	t.Logf("%d bytes nested 150000 deep: %v in %v", len(raw), err, took)
	if err == nil || !strings.Contains(err.Error(), "nested deeper than") || !strings.Contains(err.Error(), "line 5") {
		t.Fatalf("want a depth error naming the line, got %v", err)
	}
	// Generous (the quadratic parser took minutes); the budget is
	// checked by BenchmarkParseDeep.
	if took > 5*time.Second {
		t.Fatalf("took %v", took)
	}
}

func TestDepthAtTheBoundIsAccepted(t *testing.T) {
	// <domain><devices> are two levels: MaxDepth-2 more still parse.
	if _, err := Parse(nested(MaxDepth - 2)); err != nil {
		t.Fatalf("depth %d: %v", MaxDepth, err)
	}
	if _, err := Parse(nested(MaxDepth - 1)); err == nil {
		t.Fatalf("depth %d accepted", MaxDepth+1)
	}
}

// The bound holds inside <metadata> and <interface> too, where the
// parser skips what it does not read.
func TestDepthBoundInsideSkippedElements(t *testing.T) {
	for _, wrap := range []string{"metadata", "devices><interface type='network'", "name"} {
		end := strings.Fields(wrap)[0]
		end = strings.Split(end, ">")[0]
		var b bytes.Buffer
		b.WriteString("<domain><uuid>6f1c4e36-2d6b-4e59-9d0a-000000000001</uuid><" + wrap + ">")
		b.WriteString(strings.Repeat("<a>", 100000) + strings.Repeat("</a>", 100000))
		if strings.Contains(wrap, "interface") {
			b.WriteString("</interface></devices>")
		} else {
			b.WriteString("</" + end + ">")
		}
		b.WriteString("</domain>")
		if _, err := Parse(b.Bytes()); err == nil || !strings.Contains(err.Error(), "nested deeper than") {
			t.Errorf("%s: %v", wrap, err)
		}
	}
}

// BenchmarkParseDeep: a 1 MB document nested 150,000 deep (refused at the
// depth bound) and one as wide as it is allowed to be deep.
func BenchmarkParseDeep(b *testing.B) {
	raw := nested(150000)
	b.SetBytes(int64(len(raw)))
	for i := 0; i < b.N; i++ {
		_, _ = Parse(raw)
	}
}

// BenchmarkParseManyInterfaces: 4 MiB of interfaces, each on its own line;
// naming each one's line must not recount the document from its start.
func BenchmarkParseManyInterfaces(b *testing.B) {
	var buf bytes.Buffer
	buf.WriteString("<domain><uuid>6f1c4e36-2d6b-4e59-9d0a-000000000001</uuid><devices>\n")
	for buf.Len() < MaxSize-100 {
		buf.WriteString("<interface type='network'><source network='lan'/></interface>\n")
	}
	buf.WriteString("</devices></domain>")
	raw := buf.Bytes()
	b.SetBytes(int64(len(raw)))
	for i := 0; i < b.N; i++ {
		d, err := Parse(raw)
		if err != nil || len(d.Interfaces) < 60000 {
			b.Fatalf("%v", err)
		}
	}
}
