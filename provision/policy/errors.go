package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
)

// Error is a policy error: file, line, key, what is wrong and how to fix it.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

// Errors is every problem found in one policy, in file order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// The regexps compile on first use: the hook links this package, and most
// hook runs never load a policy.
var (
	nameRE    = lazyRE(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	modelRE   = lazyRE(`^[a-z0-9_-]{1,32}$`)
	typeErrRE = lazyRE(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)
	badTypeRE = lazyRE(`incompatible types: TOML value has type (\S+); destination has type (\S+)`)
)

func lazyRE(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

func decodeError(file string, loc locator, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.Usage != "" {
			msg += " (" + strings.TrimSpace(pe.Usage) + ")"
		}
		line := pe.Position.Line
		if line == 0 {
			line = pe.Line
		}
		key := pe.LastKey
		if line == 0 && key != "" {
			line = loc.line(splitKey(key)...)
		}
		return Errors{{File: file, Line: line, Key: key, Msg: msg}}
	}
	if m := typeErrRE().FindStringSubmatch(err.Error()); m != nil {
		key := m[2]
		line, _ := strconv.Atoi(m[1])
		if line == 0 {
			line = loc.line(splitKey(key)...)
		}
		msg := m[3]
		if t := badTypeRE().FindStringSubmatch(msg); t != nil {
			msg = fmt.Sprintf("has the wrong type: expected %s, found %s", t[2], t[1])
		}
		return Errors{{File: file, Line: line, Key: key, Msg: msg}}
	}
	return Errors{{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: ")}}
}
