package policy

import (
	"strings"
)

// locator maps dotted TOML key paths to the line that defines them.
//
// BurntSushi/toml keeps key positions private, yet every error virtap reports
// must name a line. The policy grammar is small (tables, keys, arrays), so a
// line scanner that follows table headers and dotted keys is enough; a key it
// cannot place falls back to the line of its nearest known parent table.
type locator map[string]int

func newLocator(src string) locator {
	loc := locator{}
	var table []string
	inMulti := ""
	for i, raw := range strings.Split(src, "\n") {
		line := strings.TrimSpace(raw)
		if inMulti != "" {
			if strings.Contains(line, inMulti) {
				inMulti = ""
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if strings.HasPrefix(line, "[") {
			h := strings.TrimPrefix(strings.TrimPrefix(line, "["), "[")
			if j := strings.Index(h, "]"); j >= 0 {
				h = h[:j]
			}
			table = splitKey(h)
			for n := 1; n <= len(table); n++ {
				loc.set(table[:n], i+1) // implicit parent tables too
			}
			continue
		}
		eq := strings.Index(line, "=")
		if eq <= 0 {
			continue
		}
		key := append(append([]string{}, table...), splitKey(line[:eq])...)
		loc.set(key, i+1)
		rest := strings.TrimSpace(line[eq+1:])
		for _, q := range []string{`"""`, `'''`} {
			if strings.HasPrefix(rest, q) && !strings.Contains(rest[3:], q) {
				inMulti = q
			}
		}
	}
	return loc
}

func (l locator) set(key []string, line int) {
	k := strings.Join(key, ".")
	if _, ok := l[k]; !ok {
		l[k] = line
	}
}

// line returns the line of key, or of its closest known ancestor, or 0.
func (l locator) line(key ...string) int {
	for n := len(key); n > 0; n-- {
		if ln, ok := l[strings.Join(key[:n], ".")]; ok {
			return ln
		}
	}
	return 0
}

// splitKey splits a TOML key such as `networks."my lan".mode` into its parts.
func splitKey(s string) []string {
	var parts []string
	var cur strings.Builder
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		case c == ' ' || c == '\t':
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, strings.TrimSpace(cur.String()))
}
