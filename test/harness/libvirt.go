package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/virtap/virtap/test/image"
	"github.com/virtap/virtap/test/internal/run"
)

// URI is the libvirt connection every helper here uses.
const URI = "qemu:///system"

// QemuConfPath is the qemu driver configuration the harness makes sure of.
var QemuConfPath = "/etc/libvirt/qemu.conf"

// qemuSettings are the qemu.conf lines TESTBED.md found necessary on a host
// with no systemd, no cgroup delegation and no security driver.
var qemuSettings = [][2]string{
	{"user", `"root"`},
	{"group", `"root"`},
	{"dynamic_ownership", "0"},
	{"remember_owner", "0"},
	{"cgroup_controllers", "[ ]"},
	{"namespaces", "[ ]"},
	{"security_driver", `"none"`},
}

// ErrNotOwned is returned by Restart when libvirtd was already running before
// the harness came: the harness only stops or restarts daemons it started.
var ErrNotOwned = errors.New("libvirtd was not started by this harness; not restarting it")

// Libvirt is a running libvirtd (and virtlogd). Stop and Restart act only on
// the daemons this handle started, by pid.
type Libvirt struct {
	// LogPath is libvirtd's log: the file the harness sends its stderr to
	// when it started it, else libvirt's default /var/log/libvirt/libvirtd.log.
	LogPath string
	// Notes says what the bring-up did or found (for t.Log).
	Notes []string

	mu       sync.Mutex
	libvirtd *daemon
	virtlogd *daemon
	warm     *image.GuestImage // SetWarmUp: boot a warm-up guest after every start
}

type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

const (
	libvirtdLog = "/var/log/libvirt/virtap-e2e-libvirtd.log"
	virtlogdLog = "/var/log/libvirt/virtap-e2e-virtlogd.log"
)

// StartLibvirt brings libvirt up as TESTBED.md describes: users and groups,
// directories, qemu.conf, then virtlogd and libvirtd, each only if it is not
// already running. It waits until `virsh -c qemu:///system version` answers.
//
// qemu.conf policy: when every required setting is already present (as an
// uncommented line with the same value) the file is left alone. Otherwise the
// original is copied once to qemu.conf.virtap-orig, conflicting lines are
// commented out with a "#virtap-e2e# " prefix, and the settings are appended
// in a marked block. Restoring is `mv qemu.conf.virtap-orig qemu.conf`.
func StartLibvirt() (*Libvirt, error) {
	l := &Libvirt{LogPath: "/var/log/libvirt/libvirtd.log"}
	if err := ensureUsers(); err != nil {
		return nil, err
	}
	for _, d := range []string{"/var/log/libvirt/qemu", "/var/lib/libvirt/qemu", "/var/cache/libvirt", "/var/run/libvirt", "/etc/libvirt"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	changed, err := EnsureQemuConf(QemuConfPath)
	if err != nil {
		return nil, err
	}
	if changed {
		l.Notes = append(l.Notes, "wrote settings to "+QemuConfPath)
	}

	if pid := runningPid("/run/virtlogd.pid", "virtlogd"); pid > 0 {
		l.Notes = append(l.Notes, fmt.Sprintf("virtlogd already running (pid %d), reusing it", pid))
	} else {
		d, err := startDaemon("virtlogd", virtlogdLog, nil)
		if err != nil {
			return nil, err
		}
		l.virtlogd = d
		if err := waitFor(10*time.Second, func() error {
			if d.exited() {
				return errStop{fmt.Errorf("virtlogd exited: %s", run.Tail(virtlogdLog, 2000))}
			}
			_, err := os.Stat("/run/libvirt/virtlogd-sock")
			return err
		}); err != nil {
			_ = l.Stop()
			return nil, err
		}
		l.Notes = append(l.Notes, fmt.Sprintf("started virtlogd (pid %d)", d.cmd.Process.Pid))
	}

	if pid := runningPid("/run/libvirtd.pid", "libvirtd"); pid > 0 {
		l.Notes = append(l.Notes, fmt.Sprintf("libvirtd already running (pid %d), reusing it", pid))
		if changed {
			l.Notes = append(l.Notes, "qemu.conf changed but libvirtd was already running: restart it yourself for the settings to apply")
		}
		if err := l.waitReady(30 * time.Second); err != nil {
			return nil, err
		}
		return l, nil
	}
	if err := l.startLibvirtd(); err != nil {
		_ = l.Stop()
		return nil, err
	}
	return l, nil
}

// Owned reports whether this handle started libvirtd (so Restart may act).
func (l *Libvirt) Owned() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.libvirtd != nil
}

func (l *Libvirt) startLibvirtd() error {
	var env []string
	if os.Getenv("LIBVIRT_LOG_OUTPUTS") == "" && os.Getenv("LIBVIRT_LOG_FILTERS") == "" {
		env = append(env, "LIBVIRT_LOG_OUTPUTS=1:stderr", "LIBVIRT_LOG_FILTERS="+libvirtdLogFilters)
	} else if os.Getenv("LIBVIRT_LOG_OUTPUTS") == "" {
		env = append(env, "LIBVIRT_LOG_OUTPUTS=3:stderr")
	}
	d, err := startDaemon("libvirtd", libvirtdLog, env)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.libvirtd = d
	l.LogPath = libvirtdLog
	l.mu.Unlock()
	if err := l.waitReady(30 * time.Second); err != nil {
		return err
	}
	l.mu.Lock()
	l.Notes = append(l.Notes, fmt.Sprintf("started libvirtd (pid %d), log %s", d.cmd.Process.Pid, libvirtdLog))
	l.mu.Unlock()
	l.warmUp()
	return nil
}

func (l *Libvirt) waitReady(timeout time.Duration) error {
	return waitFor(timeout, func() error {
		l.mu.Lock()
		d := l.libvirtd
		l.mu.Unlock()
		if d != nil && d.exited() {
			return errStop{fmt.Errorf("libvirtd exited during start-up: %s", run.Tail(libvirtdLog, 4000))}
		}
		_, err := run.Cmd(10*time.Second, "virsh", "-c", URI, "version")
		return err
	})
}

// Restart stops libvirtd (started by this handle) and starts it again, for
// it to read newly installed hooks or to exercise the reconnect path. Running
// guests keep running. It waits for Virsh calls of this process in flight
// and holds new ones until libvirtd answers again.
func (l *Libvirt) Restart() error {
	l.mu.Lock()
	d := l.libvirtd
	l.mu.Unlock()
	if d == nil {
		return ErrNotOwned
	}
	libvirtGate.Lock()
	defer libvirtGate.Unlock()
	if err := d.stop(20 * time.Second); err != nil {
		return err
	}
	l.mu.Lock()
	l.libvirtd = nil
	l.mu.Unlock()
	return l.startLibvirtd()
}

// Stop stops libvirtd and then virtlogd, each only if this handle started it.
func (l *Libvirt) Stop() error {
	l.mu.Lock()
	ld, vd := l.libvirtd, l.virtlogd
	l.libvirtd, l.virtlogd = nil, nil
	l.mu.Unlock()
	var errs []error
	if ld != nil {
		errs = append(errs, ld.stop(20*time.Second))
	}
	if vd != nil {
		errs = append(errs, vd.stop(10*time.Second))
	}
	return errors.Join(errs...)
}

// startDaemon runs name in the foreground as a child in its own process
// group (so a ^C on the test does not hit it), output appended to logPath.
func startDaemon(name, logPath string, env []string) (*daemon, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		for _, p := range []string{"/usr/sbin/" + name, "/sbin/" + name} {
			if _, e := os.Stat(p); e == nil {
				path, err = p, nil
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s not found: %w", name, err)
		}
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "---- %s started by virtap e2e harness at %s\n", name, time.Now().Format(time.RFC3339))
	cmd := exec.Command(path)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	return d, nil
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the daemon's pid (never to its group: QEMU processes
// outlive libvirtd), waits, and uses SIGKILL after timeout.
func (d *daemon) stop(timeout time.Duration) error {
	if d.exited() {
		return nil
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return nil
	case <-time.After(timeout):
	}
	_ = d.cmd.Process.Kill()
	select {
	case <-d.done:
		return fmt.Errorf("%s (pid %d) ignored SIGTERM for %s; killed", d.name, d.cmd.Process.Pid, timeout)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) does not die", d.name, d.cmd.Process.Pid)
	}
}

// runningPid returns the pid in pidfile when that process is alive and is
// comm, else 0.
func runningPid(pidfile, comm string) int {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	c, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	if err != nil || strings.TrimSpace(string(c)) != comm {
		return 0
	}
	return pid
}

func ensureUsers() error {
	for _, g := range []string{"kvm", "libvirt-qemu", "libvirt"} {
		if _, err := user.LookupGroup(g); err == nil {
			continue
		}
		if _, err := run.Cmd(30*time.Second, "groupadd", "--system", g); err != nil {
			return err
		}
	}
	if _, err := user.Lookup("libvirt-qemu"); err == nil {
		return nil
	}
	_, err := run.Cmd(30*time.Second, "useradd", "--system", "--no-create-home", "-g", "libvirt-qemu",
		"-G", "kvm", "-d", "/var/lib/libvirt", "-s", "/usr/sbin/nologin", "libvirt-qemu")
	return err
}

const qemuConfMarker = "#virtap-e2e# "

// EnsureQemuConf makes sure path holds the settings the harness needs (see
// StartLibvirt for the policy) and reports whether it changed the file.
func EnsureQemuConf(path string) (bool, error) {
	old, err := os.ReadFile(path)
	existed := err == nil
	if err != nil && !os.IsNotExist(err) {
		return false, err
	}
	out, changed := fixQemuConf(string(old))
	if !changed {
		return false, nil
	}
	if existed {
		bak := path + ".virtap-orig"
		if _, err := os.Stat(bak); os.IsNotExist(err) {
			if err := os.WriteFile(bak, old, 0o644); err != nil {
				return false, err
			}
		}
	}
	tmp := path + ".virtap-tmp"
	if err := os.WriteFile(tmp, []byte(out), 0o644); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, path)
}

// fixQemuConf returns conf with every required setting present exactly once
// with the required value, and whether that needed a change.
func fixQemuConf(conf string) (string, bool) {
	want := map[string]string{}
	for _, kv := range qemuSettings {
		want[kv[0]] = normConf(kv[1])
	}
	lines := strings.Split(conf, "\n")
	have := map[string]int{} // key -> number of matching assignments
	bad := false
	type span struct{ from, to int }
	var conflicts []span
	for i := 0; i < len(lines); i++ {
		key, val, ok := confAssignment(lines[i])
		if !ok {
			continue
		}
		w, ours := want[key]
		if !ours {
			continue
		}
		end := i
		if strings.Contains(val, "[") && !strings.Contains(val, "]") {
			for end+1 < len(lines) {
				end++
				val += lines[end]
				if strings.Contains(lines[end], "]") {
					break
				}
			}
		}
		if normConf(val) == w && have[key] == 0 {
			have[key]++
		} else {
			bad = true
			conflicts = append(conflicts, span{i, end})
		}
		i = end
	}
	missing := false
	for k := range want {
		if have[k] == 0 {
			missing = true
		}
	}
	if !bad && !missing {
		return conf, false
	}
	for _, s := range conflicts {
		for j := s.from; j <= s.to; j++ {
			lines[j] = qemuConfMarker + lines[j]
		}
	}
	// Re-derive what is still good after commenting, then append the rest.
	kept := map[string]bool{}
	for _, ln := range lines {
		if key, val, ok := confAssignment(ln); ok {
			if w, ours := want[key]; ours && normConf(val) == w {
				kept[key] = true
			}
		}
	}
	out := strings.TrimRight(strings.Join(lines, "\n"), "\n")
	var b strings.Builder
	b.WriteString(out)
	if out != "" {
		b.WriteString("\n\n")
	}
	b.WriteString("# added by the virtap e2e harness (test/harness): libvirtd without systemd, cgroups or a security driver\n")
	for _, kv := range qemuSettings {
		if !kept[kv[0]] {
			fmt.Fprintf(&b, "%s = %s\n", kv[0], kv[1])
		}
	}
	return b.String(), true
}

func confAssignment(line string) (key, val string, ok bool) {
	s := strings.TrimSpace(line)
	if s == "" || strings.HasPrefix(s, "#") {
		return "", "", false
	}
	k, v, found := strings.Cut(s, "=")
	if !found {
		return "", "", false
	}
	if i := strings.Index(v, "#"); i >= 0 && !strings.Contains(v[:i], `"`) {
		v = v[:i]
	}
	return strings.TrimSpace(k), strings.TrimSpace(v), true
}

func normConf(v string) string {
	return strings.Join(strings.Fields(v), "")
}

// errStop makes waitFor give up at once.
type errStop struct{ error }

// waitFor polls f every 200 ms until it returns nil, returns an errStop, or
// timeout passes.
func waitFor(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		var stop errStop
		if errors.As(err, &stop) {
			return stop.error
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s: %w", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// HostLockPath is the lock every program that installs hooks into the real
// /etc/libvirt/hooks or restarts libvirtd should hold while it does (the
// end-to-end tests, the demo; benchmarks should too): they share one
// libvirtd and one hooks directory per machine.
const HostLockPath = "/run/lock/virtap-libvirt.lock"

// LockHost takes HostLockPath, waiting at most timeout (logging via note
// once when it has to wait), and returns its release.
func LockHost(timeout time.Duration, note func(string)) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(HostLockPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(HostLockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for waited := false; ; waited = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s (another virtap test, demo or benchmark uses libvirtd): %w", HostLockPath, err)
		}
		if !waited && note != nil {
			note("waiting for " + HostLockPath + ": another virtap test, demo or benchmark uses this machine's libvirtd")
		}
		time.Sleep(500 * time.Millisecond)
	}
}
