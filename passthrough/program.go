package passthrough

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/vishvananda/netlink"
)

// VFConfig is what a guest interface wants of its VF. Nil pointers and a
// nil MAC leave that setting as it is.
type VFConfig struct {
	MAC       net.HardwareAddr
	VLAN      *int // 0 = untagged
	QoS       int  // 802.1p priority with VLAN
	SpoofChk  *bool
	Trust     *bool
	MaxTxRate *int // Mbit/s, 0 = unlimited
	MinTxRate *int // Mbit/s
}

// VFSettings is the state of one VF as the PF reports it; saved before
// programming and restored on release.
type VFSettings struct {
	MAC       net.HardwareAddr
	VLAN      int
	QoS       int
	SpoofChk  bool
	Trust     bool
	MaxTxRate int
	MinTxRate int
}

// VFLinker is the part of netlink that programs VFs through their PF. The
// real implementation is NetlinkVF; tests use a recorder.
type VFLinker interface {
	// VFs returns what the PF reports of its VFs, by index.
	VFs(pf string) (map[int]VFSettings, error)
	SetVfHardwareAddr(pf string, vf int, mac net.HardwareAddr) error
	SetVfVlanQos(pf string, vf, vlan, qos int) error
	SetVfSpoofchk(pf string, vf int, on bool) error
	SetVfTrust(pf string, vf int, on bool) error
	SetVfRate(pf string, vf, minRate, maxRate int) error
}

// NetlinkVF programs VFs with netlink through Handle (nil: the calling
// thread's namespace).
type NetlinkVF struct{ Handle *netlink.Handle }

var _ VFLinker = NetlinkVF{}

func (n NetlinkVF) h() *netlink.Handle {
	if n.Handle != nil {
		return n.Handle
	}
	return &netlink.Handle{}
}

func (n NetlinkVF) link(pf string) (netlink.Link, error) {
	return n.h().LinkByName(pf)
}

// VFs reads LinkByName(pf).Attrs().Vfs.
func (n NetlinkVF) VFs(pf string) (map[int]VFSettings, error) {
	l, err := n.link(pf)
	if err != nil {
		return nil, err
	}
	out := map[int]VFSettings{}
	for _, v := range l.Attrs().Vfs {
		max := int(v.MaxTxRate)
		if max == 0 {
			max = v.TxRate
		}
		out[v.ID] = VFSettings{
			MAC: v.Mac, VLAN: v.Vlan, QoS: v.Qos, SpoofChk: v.Spoofchk,
			Trust: v.Trust != 0, MaxTxRate: max, MinTxRate: int(v.MinTxRate),
		}
	}
	return out, nil
}

func (n NetlinkVF) SetVfHardwareAddr(pf string, vf int, mac net.HardwareAddr) error {
	l, err := n.link(pf)
	if err != nil {
		return err
	}
	return n.h().LinkSetVfHardwareAddr(l, vf, mac)
}

func (n NetlinkVF) SetVfVlanQos(pf string, vf, vlan, qos int) error {
	l, err := n.link(pf)
	if err != nil {
		return err
	}
	return n.h().LinkSetVfVlanQos(l, vf, vlan, qos)
}

func (n NetlinkVF) SetVfSpoofchk(pf string, vf int, on bool) error {
	l, err := n.link(pf)
	if err != nil {
		return err
	}
	return n.h().LinkSetVfSpoofchk(l, vf, on)
}

func (n NetlinkVF) SetVfTrust(pf string, vf int, on bool) error {
	l, err := n.link(pf)
	if err != nil {
		return err
	}
	return n.h().LinkSetVfTrust(l, vf, on)
}

func (n NetlinkVF) SetVfRate(pf string, vf, minRate, maxRate int) error {
	l, err := n.link(pf)
	if err != nil {
		return err
	}
	return n.h().LinkSetVfRate(l, vf, minRate, maxRate)
}

// Keys under which the saved settings live in the reservation's Data.
const (
	keyPF        = "saved_pf"
	keyIndex     = "saved_vf_index"
	keyMAC       = "saved_mac"
	keyVLAN      = "saved_vlan"
	keyQoS       = "saved_qos"
	keySpoofChk  = "saved_spoofchk"
	keyTrust     = "saved_trust"
	keyMaxTxRate = "saved_max_tx_rate"
	keyMinTxRate = "saved_min_tx_rate"
)

func encodeSaved(pf string, idx int, s VFSettings) map[string]string {
	m := map[string]string{
		keyPF:        pf,
		keyIndex:     strconv.Itoa(idx),
		keyVLAN:      strconv.Itoa(s.VLAN),
		keyQoS:       strconv.Itoa(s.QoS),
		keySpoofChk:  strconv.FormatBool(s.SpoofChk),
		keyTrust:     strconv.FormatBool(s.Trust),
		keyMaxTxRate: strconv.Itoa(s.MaxTxRate),
		keyMinTxRate: strconv.Itoa(s.MinTxRate),
	}
	if len(s.MAC) > 0 {
		m[keyMAC] = s.MAC.String()
	}
	return m
}

// decodeSaved returns the saved settings, or ok=false when none were saved.
func decodeSaved(m map[string]string) (pf string, idx int, s VFSettings, ok bool, err error) {
	pf, ok = m[keyPF]
	if !ok {
		return "", 0, s, false, nil
	}
	var errs []error
	atoi := func(k string) int {
		v, e := strconv.Atoi(m[k])
		if e != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, e))
		}
		return v
	}
	atob := func(k string) bool {
		v, e := strconv.ParseBool(m[k])
		if e != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, e))
		}
		return v
	}
	idx = atoi(keyIndex)
	s.VLAN, s.QoS = atoi(keyVLAN), atoi(keyQoS)
	s.SpoofChk, s.Trust = atob(keySpoofChk), atob(keyTrust)
	s.MaxTxRate, s.MinTxRate = atoi(keyMaxTxRate), atoi(keyMinTxRate)
	if v := m[keyMAC]; v != "" {
		mac, e := net.ParseMAC(v)
		if e != nil {
			errs = append(errs, fmt.Errorf("%s: %w", keyMAC, e))
		}
		s.MAC = mac
	}
	return pf, idx, s, true, errors.Join(errs...)
}

// apply programs cfg onto VF idx of pf, in a fixed order; it stops at the
// first failure.
func apply(l VFLinker, pf string, idx int, cfg VFConfig) error {
	if cfg.MAC != nil {
		if err := l.SetVfHardwareAddr(pf, idx, cfg.MAC); err != nil {
			return fmt.Errorf("set vf %d mac: %w", idx, err)
		}
	}
	if cfg.VLAN != nil {
		if err := l.SetVfVlanQos(pf, idx, *cfg.VLAN, cfg.QoS); err != nil {
			return fmt.Errorf("set vf %d vlan: %w", idx, err)
		}
	}
	if cfg.SpoofChk != nil {
		if err := l.SetVfSpoofchk(pf, idx, *cfg.SpoofChk); err != nil {
			return fmt.Errorf("set vf %d spoofchk: %w", idx, err)
		}
	}
	if cfg.Trust != nil {
		if err := l.SetVfTrust(pf, idx, *cfg.Trust); err != nil {
			return fmt.Errorf("set vf %d trust: %w", idx, err)
		}
	}
	if cfg.MaxTxRate != nil || cfg.MinTxRate != nil {
		minR, maxR := 0, 0
		if cfg.MinTxRate != nil {
			minR = *cfg.MinTxRate
		}
		if cfg.MaxTxRate != nil {
			maxR = *cfg.MaxTxRate
		}
		if err := l.SetVfRate(pf, idx, minR, maxR); err != nil {
			return fmt.Errorf("set vf %d rate: %w", idx, err)
		}
	}
	return nil
}

// restore puts every saved setting back, continuing past failures.
func restore(l VFLinker, pf string, idx int, s VFSettings) error {
	var errs []error
	if len(s.MAC) > 0 {
		if err := l.SetVfHardwareAddr(pf, idx, s.MAC); err != nil {
			errs = append(errs, fmt.Errorf("restore vf %d mac: %w", idx, err))
		}
	}
	if err := l.SetVfVlanQos(pf, idx, s.VLAN, s.QoS); err != nil {
		errs = append(errs, fmt.Errorf("restore vf %d vlan: %w", idx, err))
	}
	if err := l.SetVfSpoofchk(pf, idx, s.SpoofChk); err != nil {
		errs = append(errs, fmt.Errorf("restore vf %d spoofchk: %w", idx, err))
	}
	if err := l.SetVfTrust(pf, idx, s.Trust); err != nil {
		errs = append(errs, fmt.Errorf("restore vf %d trust: %w", idx, err))
	}
	if err := l.SetVfRate(pf, idx, s.MinTxRate, s.MaxTxRate); err != nil {
		errs = append(errs, fmt.Errorf("restore vf %d rate: %w", idx, err))
	}
	return errors.Join(errs...)
}
