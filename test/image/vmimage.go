package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/virtap/virtap/test/internal/run"
)

// VMModules are the kernel modules a test host VM loads: what this
// machine's kernel lacks (ipvlan, ipvtap, 8021q, vhost_net) plus what the
// in-VM tests build topologies with (veth, bridge, bonding, tun, tap), and
// the netlink families a netlink.Handle opens (xfrm_user, nfnetlink), and
// nf_tables for the anti-spoofing filters (crc32c_generic: libcrc32c's
// soft dependency, which modinfo's depends= does not name), and tc's
// ingress qdisc, u32 and mirred (l3 on-link reach). The VM has no
// modprobe, so nothing loads on demand.
var VMModules = []string{"veth", "bridge", "8021q", "bonding", "tun", "tap", "ipvlan", "ipvtap", "macvlan", "macvtap", "vhost", "vhost_net", "xfrm_user", "nfnetlink", "crc32c_generic", "nf_tables", "sch_ingress", "cls_u32", "act_mirred"}

// VMFile is one extra file for a test host VM's initramfs.
type VMFile struct {
	Name string // path inside the initramfs, without a leading slash
	Data []byte
	Mode uint32 // permission bits; 0 means 0755
}

// VMImage is a kernel and an initramfs for a test host VM.
type VMImage struct {
	Kernel        string
	Initrd        string
	KernelRelease string
	Modules       []string // in load order, dependencies first
}

// BuildVMImage returns a kernel and an initramfs holding busybox, the given
// modules (with their dependencies, read from each module's modinfo, in
// load order listed in /etc/virtap-modules), the files, and init as /init.
// The Debian kernel package is the one BuildGuestImage uses; modules are
// extracted once into the cache (test/.cache/vmkernel/PKG/).
func BuildVMImage(modules []string, init []byte, files []VMFile) (*VMImage, error) {
	k, unlock, err := lockedKernel()
	if err != nil {
		return nil, err
	}
	defer unlock()
	cache, kdir := k.cache, k.dir
	img := &VMImage{Kernel: filepath.Join(kdir, "vmlinuz"), KernelRelease: k.release}
	mdir, err := ensureVMModules(cache, filepath.Base(kdir), modules)
	if err != nil {
		return nil, err
	}
	order, err := moduleOrder(mdir, modules)
	if err != nil {
		return nil, err
	}
	img.Modules = order
	archive, err := vmInitramfs(mdir, order, init, files)
	if err != nil {
		return nil, err
	}
	gz, err := gzipped(archive, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(gz)
	img.Initrd = filepath.Join(cache, "vm-initramfs-"+hex.EncodeToString(sum[:8])+".cpio.gz")
	if _, err := os.Stat(img.Initrd); err == nil {
		return img, nil
	}
	// Keep the cache small: older VM images are rebuilt in a second.
	old, _ := filepath.Glob(filepath.Join(cache, "vm-initramfs-*.cpio.gz"))
	for _, o := range old {
		_ = os.Remove(o)
	}
	return img, writeFileAtomic(img.Initrd, gz, 0o644)
}

// ensureVMModules extracts every module of the kernel package's network,
// vhost and 802 trees that the wanted modules can need into
// cache/vmkernel/pkg/modules, downloading the package again if needed.
func ensureVMModules(cache, pkg string, want []string) (string, error) {
	dir := filepath.Join(cache, "vmkernel", pkg)
	mdir := filepath.Join(dir, "modules")
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		if _, err := moduleOrder(mdir, want); err == nil {
			return mdir, nil // every module and its dependencies are there
		}
	}
	name, version, _ := strings.Cut(pkg, "_")
	dl, err := os.MkdirTemp(cache, "download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dl)
	if _, err := run.In(dl, nil, nil, 10*time.Minute, "apt-get", "download", name+"="+version); err != nil {
		return "", err
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s left %d .deb files", pkg, len(debs))
	}
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		return "", err
	}
	if err := extractModuleTrees(debs[0], mdir); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	if _, err := moduleOrder(mdir, want); err != nil {
		return "", fmt.Errorf("%s: %w (add its folder to vmModuleTrees)", pkg, err)
	}
	return mdir, os.WriteFile(filepath.Join(dir, "complete"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
}

// vmModuleTrees are the module folders kept from the kernel package.
var vmModuleTrees = []string{"/kernel/drivers/net/", "/kernel/drivers/vhost/", "/kernel/net/802/", "/kernel/net/8021q/", "/kernel/net/tls/", "/kernel/net/bridge/", "/kernel/net/llc/", "/kernel/net/xfrm/", "/kernel/net/netfilter/", "/kernel/net/sched/", "/kernel/lib/", "/kernel/crypto/"}

func extractModuleTrees(deb, mdir string) error {
	return walkDeb(deb, func(name string, r io.Reader) error {
		if !strings.HasPrefix(name, "lib/modules/") {
			return nil
		}
		keep := false
		for _, t := range vmModuleTrees {
			if i := strings.Index(name, t); i >= 0 && !strings.Contains(name[i+len(t):], "/") {
				keep = true // directly in the folder, not in a sub-folder
			}
		}
		// drivers/net/ipvlan/ and drivers/net/bonding/ are one level deeper.
		if strings.Contains(name, "/kernel/drivers/net/ipvlan/") || strings.Contains(name, "/kernel/drivers/net/bonding/") {
			keep = true
		}
		mod, comp, ok := moduleFile(name)
		if !keep || !ok {
			return nil
		}
		return copyTo(filepath.Join(mdir, mod+".ko"), r, comp)
	})
}

// ModuleDepends reads the "depends=" field of a module's .modinfo section.
func ModuleDepends(ko string) ([]string, error) {
	f, err := elf.Open(ko)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("%s has no .modinfo section", ko)
	}
	data, err := s.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// moduleOrder returns want and everything it depends on, dependencies first.
func moduleOrder(mdir string, want []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(m string) error
	visit = func(m string) error {
		switch state[m] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", m)
		case 2:
			return nil
		}
		state[m] = 1
		deps, err := ModuleDepends(filepath.Join(mdir, m+".ko"))
		if err != nil {
			return fmt.Errorf("module %s: %w", m, err)
		}
		sort.Strings(deps)
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[m] = 2
		order = append(order, m)
		return nil
	}
	for _, m := range want {
		if err := visit(m); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func vmInitramfs(mdir string, order []string, init []byte, files []VMFile) ([]byte, error) {
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("busybox-static needed: %w", err)
	}
	if err := checkStatic(BusyboxPath); err != nil {
		return nil, err
	}
	var entries []cpioEntry
	dirs := map[string]bool{}
	addDir := func(d string) {
		for d != "." && d != "" && !dirs[d] {
			dirs[d] = true
			entries = append(entries, cpioEntry{Name: d, Mode: modeDir | 0o755})
			d = path.Dir(d)
		}
	}
	for _, d := range []string{"bin", "dev", "etc", "lib/modules", "mnt", "proc", "root", "run", "sbin", "sys", "tmp", "usr/bin", "usr/sbin"} {
		addDir(d)
	}
	entries = append(entries,
		cpioEntry{Name: "dev/console", Mode: modeChar | 0o600, RdevMaj: 5, RdevMin: 1},
		cpioEntry{Name: "dev/null", Mode: modeChar | 0o666, RdevMaj: 1, RdevMin: 3},
		cpioEntry{Name: "bin/busybox", Mode: modeFile | 0o755, Data: bb},
		cpioEntry{Name: "bin/sh", Mode: modeSymlink | 0o777, Data: []byte("busybox")},
		cpioEntry{Name: "init", Mode: modeFile | 0o755, Data: init},
		cpioEntry{Name: "etc/virtap-modules", Mode: modeFile | 0o644, Data: []byte(strings.Join(order, "\n") + "\n")},
	)
	for _, m := range order {
		b, err := os.ReadFile(filepath.Join(mdir, m+".ko"))
		if err != nil {
			return nil, err
		}
		entries = append(entries, cpioEntry{Name: "lib/modules/" + m + ".ko", Mode: modeFile | 0o644, Data: b})
	}
	for _, f := range files {
		name := strings.TrimPrefix(f.Name, "/")
		addDir(path.Dir(name))
		mode := f.Mode
		if mode == 0 {
			mode = 0o755
		}
		entries = append(entries, cpioEntry{Name: name, Mode: modeFile | mode, Data: f.Data})
	}
	var buf bytes.Buffer
	if err := writeCpio(&buf, entries); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// BootVM boots kernel and initrd under QEMU with TCG (no KVM, no libvirt),
// the serial console on stdout, and returns everything the VM printed. It
// returns when QEMU exits (the VM powers off; -no-reboot turns a panic's
// reboot into an exit) or the context ends (QEMU is killed).
func BootVM(ctx context.Context, img *VMImage, appendLine string, memMiB int, serial io.Writer) error {
	if memMiB == 0 {
		memMiB = 512
	}
	args := []string{
		"-machine", "q35,accel=tcg", "-cpu", "max", "-smp", "1", "-m", fmt.Sprint(memMiB),
		"-kernel", img.Kernel, "-initrd", img.Initrd,
		"-append", "console=ttyS0 panic=-1 quiet no_timer_check " + appendLine,
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-net", "none",
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.Stdout = serial
	cmd.Stderr = serial
	cmd.WaitDelay = 5 * time.Second
	return cmd.Run()
}
