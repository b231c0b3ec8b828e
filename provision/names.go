package provision

import (
	"crypto/sha256"
	"encoding/base32"
	"strings"

	"github.com/google/uuid"
	"libvirt.org/go/libvirtxml"

	"github.com/virtap/virtap/provision/policy"
)

// HostdevNetwork is the libvirt network that holds a hostdev pool.
func HostdevNetwork(network string) string { return "virtap-" + network }

// HostdevNetworkXML is the libvirt network definition of a hostdev pool:
// libvirt allocates one VF of the PF to each starting guest.
func HostdevNetworkXML(nw *policy.Network) (string, error) {
	n := libvirtxml.Network{
		Name:    HostdevNetwork(nw.Name),
		Forward: &libvirtxml.NetworkForward{Mode: "hostdev", Managed: "yes", PFs: []libvirtxml.NetworkForwardPF{{Dev: nw.PF}}},
	}
	return n.Marshal()
}

// DeviceName is the deterministic host device name (at most 15 characters)
// for a guest interface that virtap creates itself: "vt" + kind letter + 12
// characters of base32(SHA-256(seed, MAC, network)).
func DeviceName(kind, seed, macAddr, network string) string {
	letter := "p"
	if kind == policy.KindIpvtap {
		letter = "i"
	}
	sum := sha256.Sum256([]byte("virtap-dev\x00" + seed + "\x00" + macAddr + "\x00" + network))
	enc := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))
	return "vt" + letter + enc[:12]
}

// InstanceID derives a stable 802.1Qbg instance UUID for one guest interface.
func InstanceID(seed, macAddr string) string {
	return uuid.NewSHA1(uuid.MustParse("6f1d9a4e-3c55-4a8e-9a53-0f7a0c1c2b7e"), []byte(seed+"\x00"+macAddr)).String()
}
