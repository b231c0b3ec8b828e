// Package etcdtest runs real etcd server processes (Debian 12's
// etcd-server package, etcd 3.4, or any newer etcd on PATH) for tests and
// benchmarks: one member or a cluster, on 127.0.0.1 with ports the kernel
// picked, a throwaway data directory, stopped by pid.
//
//	srv := etcdtest.New(t)            // one member, stopped by t.Cleanup
//	c := etcdtest.NewCluster(t, 3)    // three members
//	c.Members[0].Kill()               // lose one mid-run
//
// Without an etcd binary the test is skipped, unless CI=true: then it
// fails, so that a CI run can never pass by skipping (hack/deps.sh installs
// etcd-server).
package etcdtest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Member is one etcd server process.
type Member struct {
	Name    string
	Dir     string // data directory
	Client  string // client URL, http://127.0.0.1:PORT
	Peer    string // peer URL
	LogFile string
	// TLS, when set, makes the client URL https with client-certificate
	// authentication (Server files for etcd, Client files for Wait).
	TLS *Certs

	bin     string
	cluster string // --initial-cluster
	token   string
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
}

// Binary returns the etcd binary to use: $VIRTAP_ETCD, else etcd on PATH,
// else /usr/bin/etcd.
func Binary() (string, error) {
	if b := os.Getenv("VIRTAP_ETCD"); b != "" {
		return b, nil
	}
	if b, err := exec.LookPath("etcd"); err == nil {
		return b, nil
	}
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd", nil
	}
	return "", errors.New("no etcd binary: install Debian's etcd-server (hack/deps.sh does) or set VIRTAP_ETCD")
}

// Require returns the etcd binary, or skips the test (fails it under
// CI=true) when there is none.
func Require(t testing.TB) string {
	t.Helper()
	b, err := Binary()
	if err == nil {
		return b
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v; CI=true: refusing to skip", err)
	}
	t.Skipf("%v; skipping because CI is not \"true\"", err)
	return ""
}

// freePorts returns n TCP ports on 127.0.0.1 that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// newMembers lays out n members under dir (ports, data dirs, the initial
// cluster string) without starting them.
func newMembers(bin, dir string, n int) ([]*Member, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	var ms []*Member
	var initial []string
	token := fmt.Sprintf("virtap-test-%d-%d", os.Getpid(), ports[0])
	for i := range n {
		m := &Member{
			Name:    fmt.Sprintf("m%d", i),
			Dir:     filepath.Join(dir, fmt.Sprintf("m%d", i)),
			Client:  fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			Peer:    fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			LogFile: filepath.Join(dir, fmt.Sprintf("m%d.log", i)),
			bin:     bin,
			token:   token,
		}
		initial = append(initial, m.Name+"="+m.Peer)
		ms = append(ms, m)
	}
	for _, m := range ms {
		m.cluster = strings.Join(initial, ",")
	}
	return ms, nil
}

// Start starts the member's process (again, after Kill or Stop: same data
// directory and ports). It does not wait for it to serve; see Wait.
func (m *Member) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return fmt.Errorf("etcd member %s is already running (pid %d)", m.Name, m.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(m.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(m.bin,
		"--name", m.Name,
		"--data-dir", m.Dir,
		"--listen-client-urls", m.Client,
		"--advertise-client-urls", m.Client,
		"--listen-peer-urls", m.Peer,
		"--initial-advertise-peer-urls", m.Peer,
		"--initial-cluster", m.cluster,
		"--initial-cluster-token", m.token,
		"--initial-cluster-state", "new",
		// Fast elections: a lost leader is replaced within about a second.
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
		"--logger", "zap",
		"--log-outputs", "stderr",
	)
	if m.TLS != nil {
		cmd.Args = append(cmd.Args, "--cert-file", m.TLS.Server.CertFile, "--key-file", m.TLS.Server.KeyFile,
			"--trusted-ca-file", m.TLS.Server.CAFile, "--client-cert-auth")
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd member %s: %w", m.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	m.cmd, m.exited = cmd, exited
	return nil
}

// Pid returns the process id, or 0 when the member is not running.
func (m *Member) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Wait waits until the member answers /health, or fails with the tail of
// its log.
func (m *Member) Wait(timeout time.Duration) error {
	m.mu.Lock()
	exited := m.exited
	m.mu.Unlock()
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: 500 * time.Millisecond}
	if m.TLS != nil {
		tc, err := m.TLS.Client.httpTLS()
		if err != nil {
			return err
		}
		hc.Transport = &http.Transport{TLSClientConfig: tc}
	}
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("etcd member %s exited: %s", m.Name, m.LogTail(10))
		default:
		}
		resp, err := hc.Get(m.Client + "/health")
		if err == nil {
			ok := resp.StatusCode == http.StatusOK
			resp.Body.Close()
			if ok {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd member %s not healthy after %s: %s", m.Name, timeout, m.LogTail(10))
}

// Kill ends the member with SIGKILL (a crash) and waits for it, by pid.
func (m *Member) Kill() { m.signal(syscall.SIGKILL) }

// Stop ends the member with SIGTERM and waits for it, by pid.
func (m *Member) Stop() { m.signal(syscall.SIGTERM) }

func (m *Member) signal(sig syscall.Signal) {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(cmd.Process.Pid, sig)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// LogTail returns the last n lines of the member's log.
func (m *Member) LogTail(n int) string {
	b, _ := os.ReadFile(m.LogFile)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Cluster is a set of members that form one etcd cluster.
type Cluster struct {
	Members []*Member
}

// Endpoints returns the client URLs of all members.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.Client)
	}
	return out
}

// Stop stops every member still running.
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		m.Kill()
	}
}

// StartCluster starts n members under dir and waits until all serve.
// A port taken between picking and binding makes a member exit; the whole
// cluster is then laid out again, up to three times.
func StartCluster(bin, dir string, n int) (*Cluster, error) {
	var last error
	for try := range 3 {
		ms, err := newMembers(bin, filepath.Join(dir, fmt.Sprintf("try%d", try)), n)
		if err != nil {
			return nil, err
		}
		c := &Cluster{Members: ms}
		if last = c.start(); last == nil {
			return c, nil
		}
		c.Stop()
	}
	return nil, last
}

func (c *Cluster) start() error {
	for _, m := range c.Members {
		if err := os.MkdirAll(filepath.Dir(m.Dir), 0o700); err != nil {
			return err
		}
		if err := m.Start(); err != nil {
			return err
		}
	}
	for _, m := range c.Members {
		if err := m.Wait(20 * time.Second); err != nil {
			return err
		}
	}
	return nil
}

// NewTLS starts a one-member etcd that serves clients over TLS and
// requires a client certificate; the returned files are the client's.
func NewTLS(t testing.TB) (*Member, TLSFiles) {
	t.Helper()
	bin := Require(t)
	dir := t.TempDir()
	certs, err := MakeCerts(dir)
	if err != nil {
		t.Fatalf("etcd certificates: %v", err)
	}
	ms, err := newMembers(bin, filepath.Join(dir, "tls"), 1)
	if err != nil {
		t.Fatal(err)
	}
	m := ms[0]
	m.TLS = certs
	m.Client = strings.Replace(m.Client, "http://", "https://", 1)
	c := &Cluster{Members: ms}
	t.Cleanup(c.Stop)
	if err := c.start(); err != nil {
		t.Fatalf("etcd: %v", err)
	}
	return m, certs.Client
}

// New starts a one-member etcd for the test and stops it at cleanup.
func New(t testing.TB) *Member {
	t.Helper()
	return NewCluster(t, 1).Members[0]
}

// NewCluster starts an n-member etcd cluster for the test and stops it at
// cleanup.
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := Require(t)
	c, err := StartCluster(bin, t.TempDir(), n)
	if err != nil {
		t.Fatalf("etcd: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}
