package store

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

type txT = bolt.Tx

const helperEnv = "VIRTAP_STORE_TEST_HELPER"

// TestMain lets the test binary play a hook process: the tests re-exec it
// with helperEnv set.
func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "reserve":
		os.Exit(helperReserve())
	case "churn":
		os.Exit(helperChurn())
	default:
		fmt.Fprintln(os.Stderr, "unknown helper")
		os.Exit(3)
	}
}

var helperPool = []string{"vf0", "vf1", "vf2", "vf3", "vf4", "vf5", "vf6", "vf7"}

// helperReserve opens the store like a hook would (fsync on), reserves one
// device and prints it or "exhausted".
func helperReserve() int {
	i, _ := strconv.Atoi(os.Getenv("HELPER_INDEX"))
	s, err := Open(os.Getenv("HELPER_DIR"), Options{Timeout: 30 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	defer s.Close()
	d, err := s.Reserve("p", helperPool, Holder{UUID: uuidN(i), MAC: macN(i), Name: fmt.Sprint("g", i)})
	var pe *PoolExhaustedError
	switch {
	case err == nil:
		fmt.Println(d)
	case errors.As(err, &pe):
		fmt.Println("exhausted")
	default:
		fmt.Fprintln(os.Stderr, "reserve:", err)
		return 1
	}
	return 0
}

// helperChurn writes forever, in every kind of transaction, until killed.
func helperChurn() int {
	seed, _ := strconv.ParseUint(os.Getenv("HELPER_SEED"), 10, 64)
	r := rand.New(rand.NewPCG(seed, 7))
	dir := os.Getenv("HELPER_DIR")
	s, err := Open(dir, Options{Timeout: 30 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	fmt.Println("ready")
	p := netip.MustParsePrefix("192.0.2.0/28")
	for n := 0; ; n++ {
		i := r.IntN(24)
		u, m := uuidN(i), macN(i)
		h := Holder{UUID: u, MAC: m, Name: fmt.Sprint("guest-", i)}
		var err error
		switch r.IntN(9) {
		case 0:
			_, err = s.Reserve("p", helperPool, h)
		case 1:
			_, err = s.ReleaseHolder(u)
		case 2:
			err = s.PutIface(u, h.Name, Iface{MAC: m, Device: fmt.Sprint("vt", i), Network: "lan", Extra: map[string]string{"pad": strings.Repeat("x", r.IntN(3000))}})
		case 3:
			err = s.SetIfaceState(u, m, StateReady)
		case 4:
			err = s.RemoveIface(u, m)
		case 5:
			_, err = s.Lease("lan", p, netip.Addr{}, netip.Addr{}, nil, h)
		case 6:
			_, err = s.ReleaseLeases(u)
		case 7:
			err = s.Forget(u)
		case 8:
			// Hooks are short-lived: reopen now and then.
			if err = s.Close(); err == nil {
				s, err = Open(dir, Options{Timeout: 30 * time.Second})
			}
		}
		var pe *PoolExhaustedError
		var ae *AddressesExhaustedError
		if err != nil && !errors.Is(err, ErrNotFound) && !errors.As(err, &pe) && !errors.As(err, &ae) {
			fmt.Fprintln(os.Stderr, "churn:", err)
			return 1
		}
	}
}

func helperCmd(t *testing.T, mode, dir string, extra ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "HELPER_DIR="+dir)
	cmd.Env = append(cmd.Env, extra...)
	return cmd
}

// 32 separate processes reserve from a pool of 8 at once: exactly 8 get a
// device, each device once, and nobody fails on the lock.
func TestReserveConcurrentProcesses(t *testing.T) {
	dir := t.TempDir()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		got   = map[string]int{}
		fails int
	)
	start := time.Now()
	for i := 0; i < 32; i++ {
		cmd := helperCmd(t, "reserve", dir, fmt.Sprint("HELPER_INDEX=", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := cmd.Output()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				var stderr string
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = string(ee.Stderr)
				}
				t.Errorf("helper %v: %v %s", cmd.Env[len(cmd.Env)-1], err, stderr)
				return
			}
			switch line := strings.TrimSpace(string(out)); line {
			case "exhausted":
				fails++
			default:
				got[line]++
			}
		}()
	}
	wg.Wait()
	t.Logf("32 processes done in %v", time.Since(start))
	checkEightOnce(t, got, fails)
	s := openT(t, dir)
	res, err := s.Reservations("p")
	if err != nil || len(res) != 8 {
		t.Fatalf("stored reservations: %v %d", err, len(res))
	}
	mustConsistent(t, s)
}

// Kill a writing process with SIGKILL at random moments, many times: every
// time the database opens, checks clean, and keeps its invariants.
func TestCrashRepair(t *testing.T) {
	dir := t.TempDir()
	rounds := 40
	if testing.Short() {
		rounds = 10
	}
	lastOps := 0
	for round := 0; round < rounds; round++ {
		cmd := helperCmd(t, "churn", dir, fmt.Sprint("HELPER_SEED=", round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: helper did not start: %q %v %s", round, line, err, stderr.String())
		}
		time.Sleep(time.Duration(5+rand.IntN(60)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: helper ended on its own: %v %s", round, err, stderr.String())
		}

		s, err := Open(dir, Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatalf("round %d: open after SIGKILL: %v", round, err)
		}
		mustConsistent(t, s)
		res, err := s.Reservations("p")
		if err != nil || len(res) > len(helperPool) {
			t.Fatalf("round %d: reservations %d %v", round, len(res), err)
		}
		seen := map[string]bool{}
		for _, r := range res {
			key := r.Holder.UUID + r.Holder.MAC
			if seen[key] {
				t.Fatalf("round %d: holder %s holds two devices", round, key)
			}
			seen[key] = true
		}
		ls, err := s.Leases("lan")
		if err != nil {
			t.Fatal(err)
		}
		doms, err := s.Domains()
		if err != nil {
			t.Fatal(err)
		}
		lastOps = max(lastOps, len(res)+len(ls)+len(doms))
		s.Close()
	}
	if lastOps == 0 {
		t.Fatal("the helper never left any state: the test exercised nothing")
	}
}
