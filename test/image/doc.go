// Package image builds the guests of virtap's tests without libvirt: the
// e2e guest (BuildGuestImage: a Debian kernel fetched with apt-get download,
// its virtio-net modules and a static busybox in a newc initramfs whose
// /init is init.sh) and the test VM (BuildVMImage, BootVM: the same kernel
// with the modules a realiser test needs, booted by QEMU directly). Images
// are cached under CacheDir, keyed by their inputs. EnsurePackages installs
// the Debian packages the end-to-end tests need.
//
// test/harness (the libvirt driver) and test/vm build on it; the helpers
// both share (running a program, a log's tail, the repository root) are in
// test/internal/run.
package image
