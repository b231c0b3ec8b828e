// Package domain reads a libvirt domain document and rewrites its managed
// <interface> elements and virtap's <metadata> record, keeping every other
// byte of the document as it was.
//
// Only the elements virtap owns go through libvirtxml; the rest of the
// document is copied verbatim, so foreign metadata, qemu:commandline and
// elements newer than libvirtxml survive untouched.
package domain

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"libvirt.org/go/libvirtxml"
)

// Namespace is virtap's XML namespace for its <metadata> record.
const Namespace = "https://virtap.dev/xmlns/domain/1"

// Prefix is the namespace prefix virtap writes.
const Prefix = "virtap"

// MaxSize bounds the documents virtap reads.
const MaxSize = 4 << 20

// Span is a byte range [Start, End) of the source document.
type Span struct{ Start, End int }

// Interface is one <interface> element under <devices>. The few values the
// hook needs are read while the document is scanned; the full libvirtxml
// definition (reflection, the costly part) is only built by Load, for the
// interfaces provisioning rewrites.
type Interface struct {
	Index  int // place among the domain's interfaces, from 0
	Span   Span
	Indent string // whitespace before the element on its line
	Line   int

	Type          string // the type attribute
	MAC           string // <mac address>, as written
	SourceNetwork string // <source network>
	DriverName    string // <driver name>
	TargetDev     string // <target dev>

	raw []byte
	def *libvirtxml.DomainInterface
}

// Load returns the interface's full definition (parsed once).
func (i *Interface) Load() (*libvirtxml.DomainInterface, error) {
	if i.def == nil {
		var def libvirtxml.DomainInterface
		if err := def.Unmarshal(string(i.raw)); err != nil {
			return nil, fmt.Errorf("domain XML line %d: <interface>: %v", i.Line, err)
		}
		i.def = &def
	}
	return i.def, nil
}

// Doc is a parsed domain document.
type Doc struct {
	Raw        []byte
	Type       string
	Name       string
	UUID       string
	VCPUs      int
	Interfaces []*Interface
	Record     *Record // virtap's record, nil when absent

	metadata *Span // the whole <metadata> element
	metaIn   *Span // virtap's element inside it
	after    int   // where to insert <metadata> when there is none
	indent   string
}

// Parse reads a domain document. Errors name the line. Cost is linear in
// the size of the document: the element path is kept only as deep as the
// elements virtap reads (3 levels), and nesting is bounded by MaxDepth.
func Parse(raw []byte) (*Doc, error) {
	if len(raw) > MaxSize {
		return nil, fmt.Errorf("domain XML is %d bytes; virtap reads at most %d", len(raw), MaxSize)
	}
	d := &Doc{Raw: raw, indent: "  "}
	sc := newScanner(raw)
	var stack []string // the element path, up to 3 levels deep
	indentSet := false
	for {
		start := int(sc.dec.InputOffset())
		tok, err := sc.token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("domain XML: %v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if sc.depth > 3 {
				continue // below anything virtap reads
			}
			stack = append(stack[:sc.depth-1], t.Name.Local)
			if sc.depth == 2 && !indentSet {
				d.indent, indentSet = indentAt(raw, start), true
			}
			if err := d.element(sc, t, stack, start); err != nil {
				return nil, err
			}
		}
	}
	if d.Name == "" && d.UUID == "" {
		return nil, errors.New("domain XML: no <domain> with a <name> or <uuid> found; give a libvirt domain definition")
	}
	return d, nil
}

// element reads one element virtap cares about (by its path); the others
// are left to the caller's loop.
func (d *Doc) element(sc *scanner, t xml.StartElement, stack []string, start int) error {
	path := strings.Join(stack, "/") // at most 3 names
	switch path {
	case "domain":
		for _, a := range t.Attr {
			if a.Name.Local == "type" && a.Name.Space == "" {
				d.Type = a.Value
			}
		}
	case "domain/name", "domain/uuid", "domain/vcpu":
		text, end, err := readText(sc)
		if err != nil {
			return err
		}
		switch path {
		case "domain/name":
			d.Name = strings.TrimSpace(text)
			d.after = end
		case "domain/uuid":
			d.UUID = strings.ToLower(strings.TrimSpace(text))
			d.after = end
		case "domain/vcpu":
			n, err := strconv.Atoi(strings.TrimSpace(text))
			if err != nil || n < 1 {
				return fmt.Errorf("domain XML line %d: <vcpu> %q is not a number", sc.lineAt(start), text)
			}
			d.VCPUs = n
		}
	case "domain/metadata":
		sp, in, rec, err := readMetadata(sc, start)
		if err != nil {
			return err
		}
		d.metadata, d.metaIn, d.Record = &sp, in, rec
	case "domain/devices/interface":
		ifc := &Interface{Index: len(d.Interfaces), Indent: indentAt(d.Raw, start), Line: sc.lineAt(start),
			Type: attrOf(t, "type")}
		if err := scanInterface(sc, ifc); err != nil {
			return fmt.Errorf("domain XML line %d: %v", ifc.Line, err)
		}
		end := int(sc.dec.InputOffset())
		ifc.Span, ifc.raw = Span{start, end}, d.Raw[start:end]
		d.Interfaces = append(d.Interfaces, ifc)
	}
	return nil
}

// Seed is what deterministic names derive from: the UUID, else the name.
func (d *Doc) Seed() string {
	if d.UUID != "" {
		return d.UUID
	}
	return "name:" + d.Name
}

func attrOf(t xml.StartElement, name string) string {
	for _, a := range t.Attr {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// scanInterface reads an <interface> to its end, keeping the values of
// its direct children that the hook needs.
func scanInterface(sc *scanner, ifc *Interface) error {
	depth := 0
	for {
		tok, err := sc.token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				switch t.Name.Local {
				case "mac":
					ifc.MAC = attrOf(t, "address")
				case "source":
					ifc.SourceNetwork = attrOf(t, "network")
				case "driver":
					ifc.DriverName = attrOf(t, "name")
				case "target":
					ifc.TargetDev = attrOf(t, "dev")
				}
			}
			depth++
		case xml.EndElement:
			if depth == 0 {
				return nil
			}
			depth--
		}
	}
}

func readText(sc *scanner) (string, int, error) {
	var b strings.Builder
	for {
		tok, err := sc.token()
		if err != nil {
			return "", 0, fmt.Errorf("domain XML: %v", err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			b.Write(t)
		case xml.StartElement:
			if err := sc.skip(); err != nil {
				return "", 0, fmt.Errorf("domain XML: %v", err)
			}
		case xml.EndElement:
			return b.String(), int(sc.dec.InputOffset()), nil
		}
	}
}

func readMetadata(sc *scanner, start int) (Span, *Span, *Record, error) {
	var in *Span
	var rec *Record
	for {
		off := int(sc.dec.InputOffset())
		tok, err := sc.token()
		if err != nil {
			return Span{}, nil, nil, fmt.Errorf("domain XML <metadata>: %v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space == Namespace && t.Name.Local == "virtap" && in == nil {
				var r Record
				if err := sc.decodeElement(&r, &t); err != nil {
					return Span{}, nil, nil, fmt.Errorf("domain XML line %d: virtap metadata: %v", sc.lineAt(off), err)
				}
				in = &Span{off, int(sc.dec.InputOffset())}
				rec = &r
				continue
			}
			if err := sc.skip(); err != nil {
				return Span{}, nil, nil, fmt.Errorf("domain XML <metadata>: %v", err)
			}
		case xml.EndElement:
			return Span{start, int(sc.dec.InputOffset())}, in, rec, nil
		}
	}
}

func indentAt(raw []byte, off int) string {
	i := off
	for i > 0 && (raw[i-1] == ' ' || raw[i-1] == '\t') {
		i--
	}
	if i > 0 && raw[i-1] != '\n' {
		return ""
	}
	return string(raw[i:off])
}

// emptyElem matches an element with no content, as encoding/xml writes it.
var emptyElem = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`<([A-Za-z_][\w.-]*)((?:\s+[\w:.-]+="[^"]*")*)></[A-Za-z_][\w.-]*>`)
})

// Render returns the document with the interfaces in repl (by Index)
// replaced, and virtap's metadata record set to rec (removed when rec is nil
// or empty; kept byte for byte when rec is d.Record itself). Everything else
// is copied byte for byte.
func (d *Doc) Render(repl map[int]*libvirtxml.DomainInterface, rec *Record) ([]byte, error) {
	type edit struct {
		span Span
		text string
	}
	var edits []edit
	for _, ifc := range d.Interfaces {
		def, ok := repl[ifc.Index]
		if !ok {
			continue
		}
		out, err := xml.MarshalIndent(def, ifc.Indent, "  ")
		if err != nil {
			return nil, fmt.Errorf("interface %d: %v", ifc.Index, err)
		}
		text := emptyElem().ReplaceAllString(strings.TrimPrefix(string(out), ifc.Indent), "<$1$2/>")
		edits = append(edits, edit{ifc.Span, text})
	}
	empty := rec == nil || len(rec.Interfaces) == 0
	inner := d.indent + d.indent
	switch {
	case rec != nil && rec == d.Record: // the document's own record: its bytes stay
	case d.metaIn != nil && empty:
		// Drop our element and the whitespace run before it.
		s := d.metaIn.Start
		for s > 0 && (d.Raw[s-1] == ' ' || d.Raw[s-1] == '\t' || d.Raw[s-1] == '\n') && s > d.metadata.Start {
			s--
		}
		edits = append(edits, edit{Span{s, d.metaIn.End}, ""})
	case d.metaIn != nil:
		edits = append(edits, edit{*d.metaIn, rec.marshal(indentAt(d.Raw, d.metaIn.Start))})
	case empty:
	case d.metadata != nil:
		// Append inside the existing <metadata>, before its end tag.
		end := bytes.LastIndex(d.Raw[d.metadata.Start:d.metadata.End], []byte("</"))
		if end < 0 { // <metadata/>
			edits = append(edits, edit{*d.metadata, "<metadata>\n" + inner + rec.marshal(inner) + "\n" + d.indent + "</metadata>"})
		} else {
			at := d.metadata.Start + end
			// Put our element on its own line, before the end tag's indent.
			ws := at
			for ws > d.metadata.Start && (d.Raw[ws-1] == ' ' || d.Raw[ws-1] == '\t') {
				ws--
			}
			edits = append(edits, edit{Span{ws, ws}, inner + rec.marshal(inner) + "\n"})
		}
	default:
		edits = append(edits, edit{Span{d.after, d.after}, "\n" + d.indent + "<metadata>\n" + inner + rec.marshal(inner) + "\n" + d.indent + "</metadata>"})
	}
	// Apply edits in order of position.
	for i := 1; i < len(edits); i++ {
		for j := i; j > 0 && edits[j].span.Start < edits[j-1].span.Start; j-- {
			edits[j], edits[j-1] = edits[j-1], edits[j]
		}
	}
	var b bytes.Buffer
	b.Grow(len(d.Raw) + 1024)
	pos := 0
	for _, e := range edits {
		b.Write(d.Raw[pos:e.span.Start])
		b.WriteString(e.text)
		pos = e.span.End
	}
	b.Write(d.Raw[pos:])
	return b.Bytes(), nil
}
