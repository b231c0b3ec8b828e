package logsink

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// facilityDaemon is syslog's "daemon" facility (3) shifted into PRI.
const facilityDaemon = 3 << 3

// journal encodes the record in journald's native protocol: KEY=value
// lines, and a value holding a newline as KEY\n, 64-bit little-endian
// length, value, \n. Field names are the hclog keys in upper case (domain
// -> DOMAIN, uuid -> UUID, op -> OP, device -> DEVICE, error -> ERROR).
func (r *record) journal(ident string) []byte {
	var b bytes.Buffer
	field := func(k, v string) {
		if !strings.Contains(v, "\n") {
			fmt.Fprintf(&b, "%s=%s\n", k, v)
			return
		}
		b.WriteString(k)
		b.WriteByte('\n')
		_ = binary.Write(&b, binary.LittleEndian, uint64(len(v)))
		b.WriteString(v)
		b.WriteByte('\n')
	}
	field("MESSAGE", r.message)
	field("PRIORITY", fmt.Sprint(r.priority()))
	field("SYSLOG_IDENTIFIER", ident)
	field("SYSLOG_FACILITY", fmt.Sprint(facilityDaemon>>3))
	if r.module != "" {
		field("VIRTAP_LOGGER", r.module)
	}
	for _, f := range r.fields {
		if k := journalKey(f[0]); k != "" {
			field(k, f[1])
		}
	}
	return b.Bytes()
}

// journalKey turns an hclog key into a journal field name: upper case
// letters, digits and underscores, not starting with an underscore (those
// are journald's trusted fields) or a digit.
func journalKey(k string) string {
	var b strings.Builder
	for _, c := range strings.ToUpper(k) {
		switch {
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	s := strings.TrimLeft(b.String(), "_0123456789")
	if len(s) > 64 {
		s = s[:64]
	}
	switch s {
	case "", "MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "SYSLOG_FACILITY":
		return ""
	}
	return s
}

// syslog encodes the record as an RFC 3164 line, the format /dev/log
// readers (rsyslog, syslog-ng, busybox syslogd) all accept:
// <PRI>Mmm dd hh:mm:ss TAG[PID]: message key=value ...
func (r *record) syslog(ident string, pid int) []byte {
	t := r.time
	if t.IsZero() {
		t = time.Now()
	}
	text := strings.TrimPrefix(r.text(), "["+strings.ToUpper(r.level)+"] ")
	return []byte(fmt.Sprintf("<%d>%s %s[%d]: %s", facilityDaemon|r.priority(), t.Local().Format(time.Stamp), ident, pid, text))
}
