package hooks

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// runnableHook is a real executable carrying the marker: /bin/true with the
// marker appended (an ELF runs with trailing bytes).
func runnableHook(t *testing.T) string {
	t.Helper()
	exe, err := exec.LookPath("true")
	if err != nil {
		t.Fatalf("no 'true' binary: %v", err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "virtap-hook")
	if err := os.WriteFile(p, append(b, []byte(BinaryMarker)...), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// scanLikeLibvirt does what libvirt's virHookCall does with DIR/qemu.d: list
// it and execute every regular executable file, dotfiles included. It
// counts runs of anything but "virtap" (hidden runs) and failed runs.
type scanner struct {
	runs, hidden, failed atomic.Int64
	mu                   sync.Mutex
	errs                 []string
}

func (s *scanner) once(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			continue
		}
		if e.Name() != "virtap" {
			s.hidden.Add(1)
		}
		s.runs.Add(1)
		if err := exec.Command(p, "guest", "prepare", "begin", "-").Run(); err != nil {
			s.failed.Add(1)
			s.mu.Lock()
			if len(s.errs) < 5 {
				s.errs = append(s.errs, e.Name()+": "+err.Error())
			}
			s.mu.Unlock()
		}
	}
}

// TestInstallNeverRacesLibvirtsScanner runs a libvirt-like scanner in its
// own process (as libvirtd is: a scanner in this process would inherit the
// installer's open file across fork and see ETXTBSY that libvirtd cannot,
// golang/go#22315) while 200 installs run.
func TestInstallNeverRacesLibvirtsScanner(t *testing.T) {
	if dir := os.Getenv("VIRTAP_TEST_SCANNER"); dir != "" {
		var s scanner
		done := make(chan struct{})
		go func() { bufio.NewReader(os.Stdin).ReadString('\n'); close(done) }()
		var wg sync.WaitGroup
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-done:
						return
					default:
						s.once(dir)
					}
				}
			}()
		}
		wg.Wait()
		fmt.Printf("%d %d %d %q\n", s.runs.Load(), s.hidden.Load(), s.failed.Load(), strings.Join(s.errs, "; "))
		os.Exit(0)
	}
	dir := t.TempDir()
	bin := runnableHook(t)
	if _, err := Install(InstallOptions{HooksDir: dir, Binary: bin}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestInstallNeverRacesLibvirtsScanner$")
	cmd.Env = append(os.Environ(), "VIRTAP_TEST_SCANNER="+filepath.Join(dir, "qemu.d"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // let the scanner start; it runs until told to stop
	for i := 0; i < 200; i++ {
		if _, err := Install(InstallOptions{HooksDir: dir, Binary: bin}); err != nil {
			t.Fatal(err)
		}
	}
	stdin.Write([]byte("stop\n"))
	if err := cmd.Wait(); err != nil {
		t.Fatalf("scanner: %v", err)
	}
	var runs, hidden, failed int
	var errs string
	if _, err := fmt.Sscanf(out.String(), "%d %d %d %q", &runs, &hidden, &failed, &errs); err != nil {
		t.Fatalf("scanner said %q: %v", out.String(), err)
	}
	t.Logf("scanner: %d runs, %d hidden, %d failed", runs, hidden, failed)
	if hidden != 0 || failed != 0 {
		t.Fatalf("libvirt would have run %d hidden files and %d runs failed: %s", hidden, failed, errs)
	}
	if runs == 0 {
		t.Fatal("the scanner never ran the hook")
	}
}

// A killed install leaves nothing in qemu.d that libvirt runs, and
// uninstall removes what it left in the hooks directory.
func TestKilledInstallLeavesNothingToRun(t *testing.T) {
	if os.Getenv("VIRTAP_TEST_INSTALL_CHILD") != "" {
		installBeforeRename = func() {
			os.Stdout.WriteString("ready\n")
			time.Sleep(time.Minute)
		}
		_, err := Install(InstallOptions{HooksDir: os.Getenv("VIRTAP_TEST_INSTALL_CHILD"), Binary: os.Getenv("VIRTAP_TEST_INSTALL_BIN")})
		os.Stdout.WriteString("done " + errString(err) + "\n")
		os.Exit(0)
	}
	dir := t.TempDir()
	bin := runnableHook(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledInstallLeavesNothingToRun$")
	cmd.Env = append(os.Environ(), "VIRTAP_TEST_INSTALL_CHILD="+dir, "VIRTAP_TEST_INSTALL_BIN="+bin)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q", line)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	ents, _ := os.ReadDir(filepath.Join(dir, "qemu.d"))
	for _, e := range ents {
		t.Errorf("a killed install left %s in qemu.d", e.Name())
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".virtap*"))
	if len(left) == 0 {
		t.Fatal("the child was not killed inside the install window (no temp file)")
	}
	if _, err := Uninstall(dir); err != nil {
		t.Fatal(err)
	}
	all, _ := os.ReadDir(dir)
	var names []string
	for _, e := range all {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != "qemu.d" {
		t.Fatalf("after uninstall the hooks dir holds %v", names)
	}
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}
