// Package e2e holds the end-to-end scenarios: real libvirtd, TCG guests,
// network namespaces as the switch and the external host. They run as root
// (skip otherwise, except under CI=true where they fail).
//
// The plain-libvirt scenarios and virtap's share this one test binary on
// purpose: virtap's hook is installed into the real /etc/libvirt/hooks once,
// here in TestMain before any test runs, and removed after the last one,
// so its life is under this binary's control. (The hook costs a domain
// without virtap's metadata nothing, so the plain scenarios are unaffected.)
package e2e

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/virtap/virtap/test/harness"

	"github.com/virtap/virtap/internal/nstest"
)

// vt is virtap as installed for this run: nil with virtapErr set when it
// could not be set up (the virtap scenarios then fail with that reason).
var (
	vt        *harness.Virtap
	virtapErr = errors.New("virtap was not set up (not root?)")
)

func TestMain(m *testing.M) {
	// The scenarios mostly wait on TCG guests, not on CPU: run several at
	// once unless -parallel was given (its default, GOMAXPROCS, is 2 here).
	// Four keeps about 10 TCG guests on two cores at the worst moment, so
	// boots stay well inside their timeouts on a loaded CI machine.
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", "4")
	}
	start := time.Now()
	var undo func() error
	unlock := func() {}
	if os.Geteuid() == 0 {
		var err error
		unlock, err = harness.LockHost(10*time.Minute, func(s string) { fmt.Fprintf(os.Stderr, "e2e: %s\n", s) })
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
			os.Exit(1)
		}
		undo, virtapErr = setupVirtap()
		if virtapErr != nil {
			fmt.Fprintf(os.Stderr, "e2e: virtap setup: %v\n", virtapErr)
		}
	}
	setup := time.Since(start)
	code := m.Run()
	tests := time.Since(start) - setup
	var errs []error
	if undo != nil {
		errs = append(errs, undo())
	}
	errs = append(errs, harness.Teardown())
	unlock() // the process exit would release it too
	err := errors.Join(errs...)
	fmt.Fprintf(os.Stderr, "e2e: setup %s, tests %s, teardown %s\n", setup.Round(time.Millisecond),
		tests.Round(time.Millisecond), (time.Since(start) - setup - tests).Round(time.Millisecond))
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e teardown: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// setupVirtap brings libvirt up, builds virtap into a temp dir, installs
// its hook with a fresh state directory and restarts libvirtd so that it
// runs the hook. The returned function undoes all of it (also when a test
// failed): hook uninstalled, temp dir removed; libvirtd itself is stopped
// by harness.Teardown when the harness started it.
func setupVirtap() (func() error, error) {
	env, err := harness.SetupEnv()
	if err != nil {
		return nil, err
	}
	for _, n := range env.Libvirt.Notes {
		fmt.Fprintf(os.Stderr, "e2e: harness: %s\n", n)
	}
	if !env.Libvirt.Owned() {
		// libvirtd reads hooks only when it starts: a daemon the harness
		// does not own would never run virtap's hook.
		return nil, fmt.Errorf("libvirtd was already running when the tests started; stop it so that the harness starts (and may restart) its own: %w", harness.ErrNotOwned)
	}
	dir, err := os.MkdirTemp("", "virtap-e2e-")
	if err != nil {
		return nil, err
	}
	undo := func() error { return os.RemoveAll(dir) }
	v, err := harness.BuildVirtap(filepath.Join(dir, "bin"), filepath.Join(dir, "state"))
	if err != nil {
		return nil, errors.Join(err, undo())
	}
	// The installed hook needs a policy only for migrate and restore; the
	// scenarios provision with their own and run those ops by hand.
	pol := filepath.Join(dir, "hook-policy.toml")
	if err := os.WriteFile(pol, []byte("# virtap e2e: the installed hook's policy (no networks)\n"), 0o644); err != nil {
		return nil, errors.Join(err, undo())
	}
	if err := v.InstallHooks(pol); err != nil {
		return nil, errors.Join(err, v.UninstallHooks(), undo())
	}
	undo = func() error {
		// libvirtd (ours) is stopped by harness.Teardown right after, so it
		// needs no restart to forget the hook.
		return errors.Join(v.UninstallHooks(), os.RemoveAll(dir))
	}
	if err := env.Libvirt.Restart(); err != nil {
		return nil, errors.Join(err, undo())
	}
	vt = v
	return undo, nil
}

// needVirtap returns the installed virtap or fails the test.
func needVirtap(t *testing.T) *harness.Virtap {
	t.Helper()
	nstest.RequireRoot(t)
	if vt == nil {
		t.Fatalf("virtap scenarios: %v", virtapErr)
	}
	return vt
}
