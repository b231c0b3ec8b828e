package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/virtap/virtap/internal/fsutil"
	"github.com/virtap/virtap/test/internal/run"
)

// GuestModules are the kernel modules the guest loads, in this order, to get
// a virtio-net eth0 out of the Debian kernel.
var GuestModules = []string{
	"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
	"virtio_pci", "failover", "net_failover", "virtio_net",
}

// BusyboxPath is the statically linked busybox put into the initramfs.
var BusyboxPath = "/bin/busybox"

//go:embed init.sh
var initScript []byte

// GuestImage is a kernel and an initramfs that boot to the virtap test /init.
type GuestImage struct {
	Kernel        string // path of vmlinuz
	Initrd        string // path of the gzip'd newc initramfs
	KernelRelease string // e.g. 6.1.0-56-amd64
	Package       string // e.g. linux-image-6.1.0-56-amd64_6.1.192-2
}

// BuildGuestImage returns the cached guest image, building what is missing:
// it downloads the kernel package that linux-image-amd64 depends on with
// `apt-get download`, keeps only vmlinuz and GuestModules from it (streamed
// out of `dpkg-deb --fsys-tarfile`, so the cache holds ~12 MB instead of the
// whole 400 MB module tree), and writes an initramfs named after the sha256
// of its content. Safe to call from several test processes at once.
func BuildGuestImage() (*GuestImage, error) {
	k, unlock, err := lockedKernel()
	if err != nil {
		return nil, err
	}
	defer unlock()
	cache, kdir := k.cache, k.dir
	img := &GuestImage{Package: k.pkg, KernelRelease: k.release, Kernel: filepath.Join(kdir, "vmlinuz")}

	archive, err := initramfs(filepath.Join(kdir, "modules"))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(archive)
	img.Initrd = filepath.Join(cache, "initramfs-"+hex.EncodeToString(sum[:8])+".cpio.gz")
	if _, err := os.Stat(img.Initrd); err == nil {
		return img, nil
	}
	gz, err := gzipped(archive, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(img.Initrd, gz, 0o644); err != nil {
		return nil, err
	}
	return img, nil
}

// ensureKernel returns the cache folder holding vmlinuz, release and
// modules/*.ko for the current Debian kernel package.
func ensureKernel(cache string) (dir, pkg string, err error) {
	name, version, aptErr := kernelPackage()
	if aptErr != nil {
		// Offline or no package lists: use what the cache has, if anything.
		if d, p := newestCachedKernel(cache); d != "" {
			return d, p, nil
		}
		return "", "", aptErr
	}
	pkg = name + "_" + version
	dir = filepath.Join(cache, "kernel", pkg)
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return dir, pkg, nil
	}
	dl, err := os.MkdirTemp(cache, "download-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(dl)
	if _, err := run.In(dl, nil, nil, 10*time.Minute, "apt-get", "download", name+"="+version); err != nil {
		// Stale package lists name a version the mirror no longer has:
		// refresh them once and ask again.
		if _, uerr := run.Cmd(5*time.Minute, "apt-get", "update"); uerr != nil {
			return "", "", fmt.Errorf("%v; apt-get update: %w", err, uerr)
		}
		if name, version, err = kernelPackage(); err != nil {
			return "", "", err
		}
		pkg = name + "_" + version
		dir = filepath.Join(cache, "kernel", pkg)
		if _, err := run.In(dl, nil, nil, 10*time.Minute, "apt-get", "download", name+"="+version); err != nil {
			return "", "", err
		}
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return "", "", fmt.Errorf("apt-get download %s left %d .deb files in %s", name, len(debs), dl)
	}
	_ = os.RemoveAll(dir)
	if err := extractKernel(debs[0], dir); err != nil {
		_ = os.RemoveAll(dir)
		return "", "", err
	}
	return dir, pkg, os.WriteFile(filepath.Join(dir, "complete"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
}

// kernelPackage returns the linux-image-*-amd64 package (and its candidate
// version) that the linux-image-amd64 meta package depends on.
func kernelPackage() (name, version string, err error) {
	out, err := run.Cmd(time.Minute, "apt-cache", "depends", "linux-image-amd64")
	if err != nil || !strings.Contains(out, "Depends: linux-image-") {
		if _, uerr := run.Cmd(5*time.Minute, "apt-get", "update"); uerr != nil {
			return "", "", fmt.Errorf("find kernel package: %v; apt-get update: %w", err, uerr)
		}
		if out, err = run.Cmd(time.Minute, "apt-cache", "depends", "linux-image-amd64"); err != nil {
			return "", "", err
		}
	}
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if p, ok := strings.CutPrefix(l, "Depends: "); ok && strings.HasPrefix(p, "linux-image-") {
			name = strings.Trim(p, "<>")
			break
		}
	}
	if name == "" {
		return "", "", fmt.Errorf("linux-image-amd64 depends on no linux-image-* package: %s", out)
	}
	out, err = run.Cmd(time.Minute, "apt-cache", "show", "--no-all-versions", name)
	if err != nil {
		return "", "", err
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "Version: "); ok {
			return name, strings.TrimSpace(v), nil
		}
	}
	return "", "", fmt.Errorf("no version for %s in apt-cache show", name)
}

func newestCachedKernel(cache string) (dir, pkg string) {
	marks, _ := filepath.Glob(filepath.Join(cache, "kernel", "*", "complete"))
	var best time.Time
	for _, m := range marks {
		st, err := os.Stat(m)
		if err == nil && st.ModTime().After(best) {
			best, dir = st.ModTime(), filepath.Dir(m)
		}
	}
	if dir == "" {
		return "", ""
	}
	return dir, filepath.Base(dir)
}

// extractKernel streams the data tar of a kernel .deb and keeps vmlinuz and
// the wanted modules (decompressed if the package compresses them).
func extractKernel(deb, dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "modules"), 0o755); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, m := range GuestModules {
		want[m] = true
	}
	found := map[string]bool{}
	release := ""
	err := walkDeb(deb, func(name string, r io.Reader) error {
		switch {
		case strings.HasPrefix(name, "boot/vmlinuz-"):
			release = strings.TrimPrefix(name, "boot/vmlinuz-")
			return copyTo(filepath.Join(dir, "vmlinuz"), r, "")
		case strings.HasPrefix(name, "lib/modules/") && strings.Contains(name, "/kernel/"):
			mod, comp, ok := moduleFile(name)
			if !ok || !want[mod] {
				return nil
			}
			found[mod] = true
			return copyTo(filepath.Join(dir, "modules", mod+".ko"), r, comp)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if release == "" {
		return fmt.Errorf("%s holds no boot/vmlinuz-*", deb)
	}
	for _, m := range GuestModules {
		if !found[m] {
			return fmt.Errorf("%s holds no module %s", deb, m)
		}
	}
	return os.WriteFile(filepath.Join(dir, "release"), []byte(release+"\n"), 0o644)
}

// walkDeb streams the data tar of a .deb (dpkg-deb --fsys-tarfile) and
// calls fn for each regular file, with its path without "./".
func walkDeb(deb string, fn func(name string, r io.Reader) error) error {
	cmd := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	tr := tar.NewReader(pipe)
	var werr error
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			werr = err
			break
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if werr = fn(strings.TrimPrefix(h.Name, "./"), tr); werr != nil {
			break
		}
	}
	_, _ = io.Copy(io.Discard, pipe)
	if err := cmd.Wait(); err != nil && werr == nil {
		werr = fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", deb, err, stderr.String())
	}
	return werr
}

// moduleFile splits a module path into its name and compression ("" for a
// plain .ko); ok is false for files that are not modules.
func moduleFile(name string) (mod, comp string, ok bool) {
	base := path.Base(name)
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		if strings.HasSuffix(base, ext) {
			return strings.TrimSuffix(base, ext), strings.TrimPrefix(ext, ".ko"), true
		}
	}
	return "", "", false
}

// copyTo writes r to path, decompressing ".xz", ".zst" or ".gz" content.
func copyTo(dst string, r io.Reader, comp string) error {
	var data []byte
	var err error
	switch comp {
	case "":
		data, err = io.ReadAll(r)
	case ".gz":
		zr, zerr := gzip.NewReader(r)
		if zerr != nil {
			return zerr
		}
		data, err = io.ReadAll(zr)
	case ".xz", ".zst":
		raw, rerr := io.ReadAll(r)
		if rerr != nil {
			return rerr
		}
		tool := map[string]string{".xz": "xz", ".zst": "zstd"}[comp]
		cmd := exec.Command(tool, "-dc")
		cmd.Stdin = bytes.NewReader(raw)
		data, err = cmd.Output()
		if err != nil {
			err = fmt.Errorf("%s -dc for %s: %w", tool, dst, err)
		}
	default:
		return fmt.Errorf("unknown compression %q", comp)
	}
	if err != nil {
		return err
	}
	return writeFileAtomic(dst, data, 0o644)
}

// initramfs returns the uncompressed newc archive: busybox, /init, the
// modules (in modDir) and /etc/virtap-modules listing their load order.
func initramfs(modDir string) ([]byte, error) {
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("busybox-static needed: %w", err)
	}
	if err := checkStatic(BusyboxPath); err != nil {
		return nil, err
	}
	var entries []cpioEntry
	for _, d := range []string{"bin", "dev", "etc", "lib", "lib/modules", "mnt", "proc", "root", "run", "sbin", "sys", "tmp", "usr", "usr/bin", "usr/sbin"} {
		entries = append(entries, cpioEntry{Name: d, Mode: modeDir | 0o755})
	}
	entries = append(entries,
		cpioEntry{Name: "dev/console", Mode: modeChar | 0o600, RdevMaj: 5, RdevMin: 1},
		cpioEntry{Name: "dev/null", Mode: modeChar | 0o666, RdevMaj: 1, RdevMin: 3},
		cpioEntry{Name: "bin/busybox", Mode: modeFile | 0o755, Data: bb},
		cpioEntry{Name: "bin/sh", Mode: modeSymlink | 0o777, Data: []byte("busybox")},
		cpioEntry{Name: "init", Mode: modeFile | 0o755, Data: initScript},
		cpioEntry{Name: "etc/virtap-modules", Mode: modeFile | 0o644, Data: []byte(strings.Join(GuestModules, "\n") + "\n")},
	)
	mods, _ := filepath.Glob(filepath.Join(modDir, "*.ko"))
	sort.Strings(mods)
	for _, m := range mods {
		b, err := os.ReadFile(m)
		if err != nil {
			return nil, err
		}
		entries = append(entries, cpioEntry{Name: "lib/modules/" + filepath.Base(m), Mode: modeFile | 0o644, Data: b})
	}
	var buf bytes.Buffer
	if err := writeCpio(&buf, entries); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; install busybox-static", p)
		}
	}
	return nil
}

func writeFileAtomic(p string, data []byte, mode os.FileMode) error {
	return fsutil.WriteAtomic(p, data, mode)
}

// lockFile takes an exclusive flock on p (created if needed).
func lockFile(p string) (func(), error) {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// cachedKernel is the Debian kernel unpacked in the test cache.
type cachedKernel struct {
	cache, dir, pkg, release string
}

// lockedKernel takes the cache lock (several test processes build images at
// once) and makes sure the kernel is unpacked; unlock releases the lock.
func lockedKernel() (k cachedKernel, unlock func(), err error) {
	if k.cache, err = CacheDir(); err != nil {
		return k, nil, err
	}
	if err = os.MkdirAll(k.cache, 0o755); err != nil {
		return k, nil, err
	}
	if unlock, err = lockFile(filepath.Join(k.cache, ".lock")); err != nil {
		return k, nil, err
	}
	if k.dir, k.pkg, err = ensureKernel(k.cache); err != nil {
		unlock()
		return k, nil, err
	}
	rel, err := os.ReadFile(filepath.Join(k.dir, "release"))
	if err != nil {
		unlock()
		return k, nil, err
	}
	k.release = strings.TrimSpace(string(rel))
	return k, unlock, nil
}

// gzipped compresses b at the given gzip level.
func gzipped(b []byte, level int) ([]byte, error) {
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, level)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return gz.Bytes(), nil
}
