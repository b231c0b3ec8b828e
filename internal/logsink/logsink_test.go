package logsink

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// listen plays journald or syslogd: a unixgram socket in a temp dir.
func listen(t *testing.T, name string) (string, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path, c
}

// recv reads one datagram, or fails after a second.
func recv(t *testing.T, c *net.UnixConn) []byte {
	t.Helper()
	buf := make([]byte, 64<<10)
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return buf[:n]
}

// nothing asserts that no datagram arrives.
func nothing(t *testing.T, c *net.UnixConn) {
	t.Helper()
	buf := make([]byte, 64<<10)
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("unexpected datagram %q", buf[:n])
	}
}

// parseJournal decodes journald's native protocol, as journald does.
func parseJournal(t *testing.T, b []byte) map[string]string {
	t.Helper()
	f := map[string]string{}
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			t.Fatalf("field without newline: %q", b)
		}
		line := b[:nl]
		if k, v, ok := bytes.Cut(line, []byte("=")); ok {
			f[string(k)] = string(v)
			b = b[nl+1:]
			continue
		}
		n := binary.LittleEndian.Uint64(b[nl+1 : nl+9])
		f[string(line)] = string(b[nl+9 : nl+9+int(n)])
		if b[nl+9+int(n)] != '\n' {
			t.Fatalf("binary field %s not closed by a newline", line)
		}
		b = b[nl+10+int(n):]
	}
	return f
}

const testUUID = "3c7a5a53-8f0e-4d6b-9a31-2b4f1c9d7e10"

func TestJournalFields(t *testing.T) {
	jpath, j := listen(t, "journal")
	s := &Sink{Journal: jpath, Syslog: filepath.Join(t.TempDir(), "none")}
	log := New("virtap", hclog.Info, s).Named("hook").With("op", "prepare", "domain", "web1", "uuid", testUUID)
	log.Info("created device", "device", "vti3c7a5a53", "mac", "52:54:00:00:00:01")
	f := parseJournal(t, recv(t, j))
	want := map[string]string{
		"MESSAGE": "created device", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "virtap-hook",
		"OP": "prepare", "DOMAIN": "web1", "UUID": testUUID, "DEVICE": "vti3c7a5a53",
		"MAC": "52:54:00:00:00:01", "VIRTAP_LOGGER": "virtap.hook",
	}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, f[k], v, f)
		}
	}
	// An error with a newline travels in the binary form, whole.
	log.Error("refused", "error", errors.New("parent eth9 does not exist\nfix the policy"))
	f = parseJournal(t, recv(t, j))
	if f["PRIORITY"] != "3" || f["ERROR"] != "parent eth9 does not exist\nfix the policy" || f["MESSAGE"] != "refused" {
		t.Errorf("error record: %v", f)
	}
	// Below the level: nothing is sent.
	log.Debug("details")
	nothing(t, j)
}

// Nothing logged: the socket is never opened (the hook's fast path).
func TestLazy(t *testing.T) {
	jpath, j := listen(t, "journal")
	s := &Sink{Journal: jpath}
	log := New("virtap", hclog.Warn, s)
	log.Info("below the level")
	log.Debug("below the level")
	if s.conn != nil || s.kind != "" {
		t.Fatalf("socket opened with nothing to log (kind %q)", s.kind)
	}
	nothing(t, j)
	log.Warn("now")
	if s.kind != TargetJournal {
		t.Fatalf("kind %q after the first record", s.kind)
	}
	recv(t, j)
}

func TestSyslogWhenNoJournal(t *testing.T) {
	spath, sl := listen(t, "log")
	s := &Sink{Journal: filepath.Join(t.TempDir(), "no-journal"), Syslog: spath}
	log := New("virtap", hclog.Info, s).Named("hook").With("op", "release", "domain", "web1", "uuid", testUUID)
	log.Warn("released with leftovers", "device", "vtp1", "error", "device busy")
	got := string(recv(t, sl))
	wantPrefix := fmt.Sprintf("<%d>", 3<<3|4) // daemon.warning
	if !strings.HasPrefix(got, wantPrefix) {
		t.Errorf("syslog line %q does not start with %s", got, wantPrefix)
	}
	for _, w := range []string{fmt.Sprintf("virtap-hook[%d]: ", os.Getpid()), "virtap.hook: released with leftovers",
		"device=vtp1", "domain=web1", "op=release", "uuid=" + testUUID, `error="device busy"`} {
		if !strings.Contains(got, w) {
			t.Errorf("syslog line %q lacks %q", got, w)
		}
	}
}

func TestStderrWhenNoSocket(t *testing.T) {
	var out bytes.Buffer
	dir := t.TempDir()
	s := &Sink{Journal: filepath.Join(dir, "j"), Syslog: filepath.Join(dir, "s"), Fallback: &out}
	New("virtap", hclog.Info, s).Info("prepared", "domain", "web1")
	if got := out.String(); got != "[INFO] virtap: prepared domain=web1\n" {
		t.Errorf("stderr line %q", got)
	}
}

// A forced target is used even when another socket is there.
func TestForcedTargets(t *testing.T) {
	jpath, j := listen(t, "journal")
	spath, sl := listen(t, "log")
	var out bytes.Buffer
	New("virtap", hclog.Info, &Sink{Target: TargetSyslog, Journal: jpath, Syslog: spath}).Info("x")
	recv(t, sl)
	New("virtap", hclog.Info, &Sink{Target: TargetStderr, Journal: jpath, Syslog: spath, Fallback: &out}).Info("y")
	if !strings.Contains(out.String(), "y") {
		t.Errorf("stderr target wrote %q", out.String())
	}
	nothing(t, j)
	nothing(t, sl)
	// journal forced but absent: stderr, not syslog.
	out.Reset()
	New("virtap", hclog.Info, &Sink{Target: TargetJournal, Journal: filepath.Join(t.TempDir(), "gone"), Syslog: spath, Fallback: &out}).Info("z")
	if !strings.Contains(out.String(), "z") {
		t.Errorf("journal target without journal wrote %q to stderr", out.String())
	}
	nothing(t, sl)
}

// A journald that goes away mid-run: records fall back to stderr.
func TestDaemonGone(t *testing.T) {
	jpath, j := listen(t, "journal")
	var out bytes.Buffer
	log := New("virtap", hclog.Info, &Sink{Journal: jpath, Fallback: &out})
	log.Info("first")
	recv(t, j)
	j.Close()
	os.Remove(jpath)
	log.Info("second")
	if !strings.Contains(out.String(), "second") {
		t.Errorf("record lost when journald went away; stderr %q", out.String())
	}
}

func TestJournalKey(t *testing.T) {
	for in, want := range map[string]string{"domain": "DOMAIN", "vf_index": "VF_INDEX", "_hidden": "HIDDEN", "9x": "X", "message": "", "a.b-c": "A_B_C"} {
		if got := journalKey(in); got != want {
			t.Errorf("journalKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// What one record costs the hook: hclog's JSON, the parse, the datagram.
func BenchmarkJournalRecord(b *testing.B) {
	path := filepath.Join(b.TempDir(), "journal")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	log := New("virtap", hclog.Info, &Sink{Journal: path}).Named("hook").With("op", "prepare", "domain", "web1", "uuid", testUUID)
	b.ReportAllocs()
	for b.Loop() {
		log.Info("created device", "device", "vti3c7a5a53", "mac", "52:54:00:00:00:01")
	}
}

// A record below the level: what a quiet hook pays per call.
func BenchmarkBelowLevel(b *testing.B) {
	log := New("virtap", hclog.Info, &Sink{Journal: filepath.Join(b.TempDir(), "none")}).With("op", "prepare")
	b.ReportAllocs()
	for b.Loop() {
		log.Debug("details", "device", "vti3c7a5a53")
	}
}
