package domain

import (
	"bytes"
	"encoding/xml"
	"fmt"
)

// MaxDepth bounds element nesting. libxml2, libvirt's parser, refuses
// documents nested deeper than 256 levels unless told XML_PARSE_HUGE
// ("Excessive depth in document: 256"), so no domain libvirt accepts is
// refused here; a document nested 150,000 deep (1 MB) is refused at the
// 257th level in microseconds.
const MaxDepth = 256

// scanner reads tokens, keeping the element depth (bounded by MaxDepth)
// and the line of the last offset asked for, so that naming lines costs
// one pass over the document in total, not one per element.
type scanner struct {
	dec   *xml.Decoder
	raw   []byte
	depth int

	lineOff, line int // line is the line number at byte lineOff
}

func newScanner(raw []byte) *scanner {
	return &scanner{dec: xml.NewDecoder(bytes.NewReader(raw)), raw: raw, line: 1}
}

// token is dec.Token with the depth bound.
func (s *scanner) token() (xml.Token, error) {
	tok, err := s.dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok.(type) {
	case xml.StartElement:
		s.depth++
		if s.depth > MaxDepth {
			return nil, fmt.Errorf("line %d: elements nested deeper than %d levels (libvirt's parser refuses them too); remove the nesting",
				s.lineAt(int(s.dec.InputOffset())), MaxDepth)
		}
	case xml.EndElement:
		s.depth--
	}
	return tok, nil
}

// skip reads to the end of the element whose start token was just read.
func (s *scanner) skip() error {
	for d := 0; ; {
		tok, err := s.token()
		if err != nil {
			return err
		}
		switch tok.(type) {
		case xml.StartElement:
			d++
		case xml.EndElement:
			if d == 0 {
				return nil
			}
			d--
		}
	}
}

// decodeElement is dec.DecodeElement for the element whose start token was
// just read (its depth counted): the decoder reads through its end.
func (s *scanner) decodeElement(v any, start *xml.StartElement) error {
	err := s.dec.DecodeElement(v, start)
	if err == nil {
		s.depth--
	}
	return err
}

// lineAt is the line of byte off. Offsets asked for mostly grow, so it
// counts on from the last one.
func (s *scanner) lineAt(off int) int {
	if off > len(s.raw) {
		off = len(s.raw)
	}
	if off < s.lineOff {
		s.lineOff, s.line = 0, 1
	}
	s.line += bytes.Count(s.raw[s.lineOff:off], []byte("\n"))
	s.lineOff = off
	return s.line
}
