package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// CacheDir is where downloaded kernels and built initramfs images live:
// $VIRTAP_TEST_CACHE, else test/.cache in the repository (gitignored).
func CacheDir() (string, error) {
	if d := os.Getenv("VIRTAP_TEST_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate harness source to find test/.cache; set VIRTAP_TEST_CACHE")
	}
	// file is .../test/harness/env.go
	return filepath.Join(filepath.Dir(filepath.Dir(file)), ".cache"), nil
}

// RepoRoot is the repository root (where bin/ of `make build` lives).
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate harness source")
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(file))), nil
}

// run executes a program (never through a shell) with a timeout and returns
// its combined output; the error carries the command line and the output.
func run(timeout time.Duration, name string, args ...string) (string, error) {
	return runIn("", nil, nil, timeout, name, args...)
}

func runInEnv(env []string, timeout time.Duration, name string, args ...string) (string, error) {
	return runIn("", env, nil, timeout, name, args...)
}

func runIn(dir string, env []string, stdin []byte, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("timed out after %s", timeout)
	}
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// tail returns at most the last n bytes of a file, for failure dumps.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot stat %s: %v)", path, err)
	}
	off := int64(0)
	if st.Size() > n {
		off = st.Size() - n
	}
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	return string(buf)
}
