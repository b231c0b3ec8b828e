package hooks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/google/renameio/v2"

	"github.com/virtap/virtap/internal/fsutil"
	"github.com/virtap/virtap/internal/paths"
)

// BinaryMarker is a string every virtap-hook binary carries, so that
// install and uninstall recognise their own file and never clobber another.
const BinaryMarker = "virtap-hook-binary/qemu.d/v1"

// DefaultHooksDir is libvirt's hooks directory.
const DefaultHooksDir = paths.HooksDir

// ConfigName is the hook's settings file in the hooks directory. libvirt
// runs only DIR/qemu and the files in DIR/qemu.d/, so it ignores this file.
const ConfigName = paths.HookConfig

// HookConfig is what the installed hook reads at start: libvirt runs hooks
// with a bare environment, so the paths cannot come from it.
type HookConfig struct {
	Policy   string `toml:"policy"`
	StateDir string `toml:"state_dir"`
	LogLevel string `toml:"log_level"`
	// LogTarget: auto (the journal, else syslog, else stderr), journal, syslog or stderr.
	LogTarget string `toml:"log_target,omitempty"`
	Host      string `toml:"host"`
}

// InstallOptions say where to put the hook and what it should use.
type InstallOptions struct {
	HooksDir string
	Binary   string // the virtap-hook binary to copy
	HookConfig
}

// HookPath is where the hook lives in a hooks directory.
func HookPath(hooksDir string) string { return filepath.Join(hooksDir, paths.Hook) }

// Install copies the hook binary to DIR/qemu.d/virtap (root-owned, 0755)
// and writes DIR/virtap-hook.toml (0644). It refuses to replace a file that
// is not a virtap hook.
func Install(o InstallOptions) (string, error) {
	if o.HooksDir == "" {
		o.HooksDir = DefaultHooksDir
	}
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return "", fmt.Errorf("hook binary: %w (build it with 'make build' or give --hook-binary)", err)
	}
	if !bytes.Contains(bin, []byte(BinaryMarker)) {
		return "", fmt.Errorf("%s is not a virtap-hook binary", o.Binary)
	}
	dst := HookPath(o.HooksDir)
	if err := refuseForeign(dst); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	removeLeftovers(o.HooksDir)
	var cfg bytes.Buffer
	cfg.WriteString("# Written by 'virtap hooks install': what the virtap qemu hook uses.\n")
	if err := toml.NewEncoder(&cfg).Encode(o.HookConfig); err != nil {
		return "", err
	}
	if err := placeFile(o.HooksDir, filepath.Join(o.HooksDir, ConfigName), cfg.Bytes(), 0o644); err != nil {
		return "", err
	}
	if err := placeFile(o.HooksDir, dst, bin, 0o755); err != nil {
		return "", err
	}
	return dst, nil
}

// placeFile writes data to a temporary file in tmpDir and renames it to
// dst. libvirt executes every executable file in qemu.d, dotfiles
// included, each time a guest starts or stops; a temporary file there
// would be run half-written (ETXTBSY while open for writing) or twice
// (once under its temporary name). So the temporary file lives in the
// hooks directory itself (same file system, and libvirt runs only the
// files named after a driver there), is written, chmodded, fsynced and
// closed there, and only then renamed into place; the directory entry is
// fsynced after the rename. A killed install leaves at most a
// ".virtap<digits>" file in the hooks directory, which libvirt never
// runs and the next install or uninstall removes.
func placeFile(tmpDir, dst string, data []byte, mode os.FileMode) error {
	f, err := renameio.NewPendingFile(dst, renameio.WithTempDir(tmpDir), renameio.WithStaticPermissions(0o600))
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := f.Chown(0, 0); err != nil {
			return err
		}
	}
	if installBeforeRename != nil {
		installBeforeRename()
	}
	if err := f.CloseAtomicallyReplace(); err != nil {
		return err
	}
	return fsutil.SyncDir(filepath.Dir(dst))
}

// leftover names the temporary files a killed install can leave: this
// installer's in the hooks directory (renameio: "." + final name + digits)
// and older installers' ".virtap-<digits>" inside qemu.d.
var (
	leftoverHooksDir = regexp.MustCompile(`^\.(virtap|virtap-hook\.toml)[0-9]+$`)
	leftoverQemuD    = regexp.MustCompile(`^\.virtap-[0-9]+$`)
)

// removeLeftovers deletes the temporary files of killed installs.
func removeLeftovers(hooksDir string) {
	for dir, re := range map[string]*regexp.Regexp{hooksDir: leftoverHooksDir, filepath.Join(hooksDir, "qemu.d"): leftoverQemuD} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.Type().IsRegular() && re.MatchString(e.Name()) {
				_ = os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
}

// Uninstall removes the hook and its settings, only if the hook is virtap's.
func Uninstall(hooksDir string) (string, error) {
	if hooksDir == "" {
		hooksDir = DefaultHooksDir
	}
	dst := HookPath(hooksDir)
	removeLeftovers(hooksDir)
	if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
		_ = os.Remove(filepath.Join(hooksDir, ConfigName))
		return dst, nil
	}
	if err := refuseForeign(dst); err != nil {
		return "", err
	}
	if err := os.Remove(dst); err != nil {
		return "", err
	}
	if err := os.Remove(filepath.Join(hooksDir, ConfigName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	return dst, nil
}

func refuseForeign(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if data, err := os.ReadFile(path); err == nil && bytes.Contains(data, []byte(BinaryMarker)) {
			return fmt.Errorf("%s is a symlink to a virtap hook, as the virtap Debian package installs it: the package manages it (dpkg -S %s); virtap hooks install/uninstall leave it alone", path, path)
		}
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s exists and is not a regular file; virtap leaves it alone (move it away first)", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 256<<20))
	if err != nil {
		return err
	}
	if !bytes.Contains(data, []byte(BinaryMarker)) {
		return fmt.Errorf("%s exists and is not virtap's hook; virtap will not replace it (move it away first)", path)
	}
	return nil
}

// LoadHookConfig reads the settings next to an installed hook: exe is
// DIR/qemu.d/virtap, the settings DIR/virtap-hook.toml. A missing file gives
// the zero config (defaults apply).
func LoadHookConfig(exe string) (HookConfig, error) {
	var c HookConfig
	path := filepath.Join(filepath.Dir(filepath.Dir(exe)), ConfigName)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		keys := make([]string, len(u))
		for i, k := range u {
			keys[i] = k.String()
		}
		return c, fmt.Errorf("%s: unknown keys %s (allowed: policy, state_dir, log_level, log_target, host)", path, strings.Join(keys, ", "))
	}
	return c, nil
}

// installBeforeRename, if set (tests), runs when a temporary file is
// complete and before it is renamed into place.
var installBeforeRename func()
