package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The installed hook as libvirtd runs it logs what it did to the journal:
// here a socket that plays journald, given to the real binary.
func TestHookLogsToJournal(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "virtap-hook")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	sock := filepath.Join(t.TempDir(), "journal")
	j, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	run := func(xml string, args ...string) string {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"VIRTAP_STATE_DIR=" + filepath.Join(t.TempDir(), "s"), "VIRTAP_POLICY=" + missingParentPolicy(t), "VIRTAP_JOURNAL_SOCKET=" + sock,
			"VIRTAP_SYSLOG_SOCKET=" + filepath.Join(t.TempDir(), "no-syslog")}
		cmd.Stdin = strings.NewReader(xml)
		var e bytes.Buffer
		cmd.Stderr = &e
		_ = cmd.Run()
		return e.String()
	}
	read := func() (string, bool) {
		buf := make([]byte, 64<<10)
		_ = j.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := j.Read(buf)
		return string(buf[:n]), err == nil
	}
	// An unmanaged domain: no log at all.
	run("<domain type='qemu'><name>p</name><devices/></domain>", "p", "prepare", "begin", "-")
	if got, ok := read(); ok {
		t.Fatalf("unmanaged domain logged %q", got)
	}
	managed := `<domain type='qemu'><name>m</name><uuid>3c7a5a53-8f0e-4d6b-9a31-2b4f1c9d7e10</uuid><metadata><virtap:virtap xmlns:virtap="https://virtap.dev/xmlns/domain/1"><virtap:interface mac="52:54:00:00:00:01" network="lan" kind="macvtap" mode="bridge" parent="nosuchnic0"/></virtap:virtap></metadata><devices/></domain>`
	stderr := run(managed, "m", "prepare", "begin", "-")
	if !strings.Contains(stderr, "nosuchnic0") {
		t.Errorf("virsh start must still see the reason on stderr: %q", stderr)
	}
	var refused string
	for {
		got, ok := read()
		if !ok {
			break
		}
		if strings.Contains(got, "MESSAGE=refused\n") {
			refused = got
		}
	}
	for _, want := range []string{"PRIORITY=3\n", "SYSLOG_IDENTIFIER=virtap-hook\n", "OP=prepare\n", "DOMAIN=m\n",
		"UUID=3c7a5a53-8f0e-4d6b-9a31-2b4f1c9d7e10\n", "ERROR=", "nosuchnic0"} {
		if !strings.Contains(refused, want) {
			t.Errorf("the refusal's journal record lacks %q:\n%s", want, refused)
		}
	}
	run(managed, "m", "release", "end", "-")
	if got, ok := read(); !ok || !strings.Contains(got, "MESSAGE=released\n") || !strings.Contains(got, "OP=release\n") {
		t.Errorf("release logged %q", got)
	}
}
