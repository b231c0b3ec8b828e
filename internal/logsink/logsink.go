// Package logsink sends the hook's hclog records to the system journal
// (journald's native protocol), else to syslog, else to stderr. hclog
// writes each record as one JSON line to a Sink (an io.Writer); the Sink
// turns it into structured journal fields (DOMAIN, UUID, OP, DEVICE, ...)
// or a syslog line. hclog checks the level before it formats anything, so
// a hook that logs nothing does no work here, and the socket is opened only
// when the first record is written.
package logsink

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Default socket paths.
const (
	JournalSocket = "/run/systemd/journal/socket"
	SyslogSocket  = "/dev/log"
)

// Targets a Sink may be told to use.
const (
	TargetAuto    = "auto" // the journal, else syslog, else stderr
	TargetJournal = "journal"
	TargetSyslog  = "syslog"
	TargetStderr  = "stderr"
)

// Sink is an io.Writer for hclog's JSON output.
type Sink struct {
	Target     string    // auto (default), journal, syslog, stderr
	Identifier string    // SYSLOG_IDENTIFIER / syslog tag
	Journal    string    // journald's socket; "" = JournalSocket
	Syslog     string    // the syslog socket; "" = SyslogSocket
	Fallback   io.Writer // when no socket answers; nil = os.Stderr

	mu   sync.Mutex
	conn net.Conn
	kind string // what conn speaks: journal or syslog; stderr when none
}

// Targets lists the allowed values of Target.
func Targets() []string { return []string{TargetAuto, TargetJournal, TargetSyslog, TargetStderr} }

// New returns a logger named name that writes through s at level.
func New(name string, level hclog.Level, s *Sink) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: level, Output: s, JSONFormat: true})
}

// Write takes one hclog JSON record (or several, one per line).
func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		if len(line) > 0 {
			s.write(line)
		}
	}
	return len(p), nil
}

// Close closes the socket, if one was opened.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn, s.kind = nil, ""
	return err
}

func (s *Sink) write(line []byte) {
	rec, err := parse(line)
	if err != nil {
		fmt.Fprintf(s.fallback(), "%s\n", line)
		return
	}
	if s.kind == "" {
		s.connect()
	}
	var msg []byte
	switch s.kind {
	case TargetJournal:
		msg = rec.journal(s.ident())
	case TargetSyslog:
		msg = rec.syslog(s.ident(), os.Getpid())
	}
	if msg != nil {
		if _, err := s.conn.Write(msg); err == nil {
			return
		}
	}
	// stderr, or the socket failed (too large, daemon gone): libvirtd
	// still keeps the hook's stderr in its log.
	fmt.Fprintln(s.fallback(), rec.text())
}

// connect picks the first target that answers; stderr when none does.
func (s *Sink) connect() {
	s.kind = TargetStderr
	try := func(kind, path string) bool {
		c, err := net.Dial("unixgram", path)
		if err != nil {
			return false
		}
		s.conn, s.kind = c, kind
		return true
	}
	journal, syslog := s.Journal, s.Syslog
	if journal == "" {
		journal = JournalSocket
	}
	if syslog == "" {
		syslog = SyslogSocket
	}
	switch s.Target {
	case TargetJournal:
		try(TargetJournal, journal)
	case TargetSyslog:
		try(TargetSyslog, syslog)
	case TargetStderr:
	default:
		_ = try(TargetJournal, journal) || try(TargetSyslog, syslog)
	}
}

func (s *Sink) fallback() io.Writer {
	if s.Fallback != nil {
		return s.Fallback
	}
	return os.Stderr
}

func (s *Sink) ident() string {
	if s.Identifier != "" {
		return s.Identifier
	}
	return "virtap-hook"
}

// record is one parsed hclog JSON line.
type record struct {
	level, message, module string
	time                   time.Time
	fields                 [][2]string // sorted by key
}

func parse(line []byte) (*record, error) {
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, err
	}
	r := &record{}
	for k, v := range m {
		s := fmt.Sprint(v)
		switch k {
		case "@level":
			r.level = s
		case "@message":
			r.message = s
		case "@module":
			r.module = s
		case "@timestamp":
			r.time, _ = time.Parse("2006-01-02T15:04:05.000000Z07:00", s)
		case "@caller":
		default:
			r.fields = append(r.fields, [2]string{k, s})
		}
	}
	sort.Slice(r.fields, func(i, j int) bool { return r.fields[i][0] < r.fields[j][0] })
	return r, nil
}

// priority is the syslog severity of an hclog level.
func (r *record) priority() int {
	switch r.level {
	case "error":
		return 3
	case "warn":
		return 4
	case "info":
		return 6
	default:
		return 7
	}
}

// text is the record as one human-readable line: message key=value ...
func (r *record) text() string {
	var b strings.Builder
	if r.module != "" {
		fmt.Fprintf(&b, "%s: ", r.module)
	}
	b.WriteString(r.message)
	for _, f := range r.fields {
		v := f[1]
		if strings.ContainsAny(v, " \t\n\"=") {
			v = fmt.Sprintf("%q", v)
		}
		fmt.Fprintf(&b, " %s=%s", f[0], v)
	}
	return fmt.Sprintf("[%s] %s", strings.ToUpper(r.level), b.String())
}
