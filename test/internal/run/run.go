// Package run holds the small helpers the test harness and the image
// builder share: run a program (never through a shell) with a timeout, read
// the tail of a log, find the repository.
package run

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

// RepoRoot is the repository root (where bin/ of `make build` lives).
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the test helpers' source to find the repository")
	}
	// file is .../test/internal/run/run.go
	return filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(file)))), nil
}

// Cmd executes a program (never through a shell) with a timeout and returns
// its combined output; the error carries the command line and the output.
func Cmd(timeout time.Duration, name string, args ...string) (string, error) {
	return In("", nil, nil, timeout, name, args...)
}

// CmdEnv is Cmd with env (KEY=value) added to this process's environment.
func CmdEnv(env []string, timeout time.Duration, name string, args ...string) (string, error) {
	return In("", env, nil, timeout, name, args...)
}

// In is Cmd in directory dir ("" for the current one), with env added to
// this process's environment and stdin (nil for none) as its input.
func In(dir string, env []string, stdin []byte, timeout time.Duration, name string, args ...string) (string, error) {
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

// Tail returns at most the last n bytes of a file, for failure dumps.
func Tail(path string, n int64) string {
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
