package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/virtap/virtap/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// MACRecord says which domain owns a MAC address, fleet-wide.
type MACRecord struct {
	MAC    string       `json:"mac"`
	Holder store.Holder `json:"holder"` // Holder.MAC is empty here
	Host   string       `json:"host"`   // the host that registered it
	Since  time.Time    `json:"since"`
}

// MACTakenError says a MAC is registered to another domain.
type MACTakenError struct {
	MAC   string
	Owner MACRecord
}

func (e *MACTakenError) Error() string {
	return fmt.Sprintf("mac %s is already used by domain %s on host %s (fleet MAC registry)", e.MAC, e.Owner.Holder, e.Owner.Host)
}

// ClaimMAC registers mac as domain h.UUID's, fleet-wide. Claiming a MAC the
// domain already owns succeeds (on any host); a MAC of another domain gives
// a *MACTakenError. It also records that this host has the domain.
func (c *Client) ClaimMAC(mac string, h store.Holder) error {
	ctx, cancel := c.ctx()
	defer cancel()
	return c.claimMAC(ctx, mac, h)
}

func (c *Client) claimMAC(ctx context.Context, mac string, h store.Holder) error {
	var err error
	if h.UUID, err = store.NormalizeUUID(h.UUID); err != nil {
		return err
	}
	if mac, err = store.NormalizeMAC(mac); err != nil {
		return err
	}
	h.MAC = ""
	rec, err := json.Marshal(MACRecord{MAC: mac, Holder: h, Host: c.host, Since: c.now().UTC()})
	if err != nil {
		return err
	}
	mk := c.macKey(mac)
	for {
		tx, err := c.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(mk), "=", 0)).
			Then(clientv3.OpPut(mk, string(rec)), clientv3.OpPut(c.macsOf(h.UUID)+mac, ""), clientv3.OpPut(c.hostKey(h.UUID), c.hostValue(h))).
			Else(clientv3.OpGet(mk)).
			Commit()
		if err != nil {
			if ctx.Err() == nil && transient(err) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return c.unavailable("the registration of mac "+mac, err)
		}
		if tx.Succeeded {
			return nil
		}
		kvs := tx.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // freed in the meantime
		}
		var owner MACRecord
		if err := json.Unmarshal(kvs[0].Value, &owner); err != nil {
			return fmt.Errorf("fleet store: mac %s: %w", mac, err)
		}
		if owner.Holder.UUID != h.UUID {
			return &MACTakenError{MAC: mac, Owner: owner}
		}
		return c.noteHost(ctx, h)
	}
}

// noteHost records that this host has the domain (when it does not yet).
func (c *Client) noteHost(ctx context.Context, h store.Holder) error {
	k := c.hostKey(h.UUID)
	_, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).Then(clientv3.OpPut(k, c.hostValue(h))).Commit()
	if err != nil {
		return c.unavailable("a host record of domain "+h.UUID, err)
	}
	return nil
}

// ClaimFreeMAC registers the first MAC of candidate(0), candidate(1), ...
// (at most tries of them) that is free or already the domain's, and returns
// it: a derived MAC that collides with another domain's anywhere in the
// fleet is stepped past.
func (c *Client) ClaimFreeMAC(h store.Holder, tries int, candidate func(attempt int) string) (string, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	var taken []string
	for i := range tries {
		mac := candidate(i)
		err := c.claimMAC(ctx, mac, h)
		if err == nil {
			if len(taken) > 0 {
				c.log.Info("stepped past macs used elsewhere in the fleet", "uuid", h.UUID, "taken", strings.Join(taken, ","), "mac", mac)
			}
			return mac, nil
		}
		if _, ok := err.(*MACTakenError); !ok {
			return "", err
		}
		taken = append(taken, mac)
	}
	return "", fmt.Errorf("fleet MAC registry: the %d MACs tried for domain %s are all used by other domains (%s); widen mac_prefix (fewer fixed octets)", tries, h, strings.Join(taken, ", "))
}

// MACOwner returns who owns mac, fleet-wide (ok false when nobody does).
func (c *Client) MACOwner(mac string) (MACRecord, bool, error) {
	mac, err := store.NormalizeMAC(mac)
	if err != nil {
		return MACRecord{}, false, err
	}
	ctx, cancel := c.ctx()
	defer cancel()
	resp, err := c.cli.Get(ctx, c.macKey(mac))
	if err != nil {
		return MACRecord{}, false, c.unavailable("a read of mac "+mac, err)
	}
	if len(resp.Kvs) == 0 {
		return MACRecord{}, false, nil
	}
	var r MACRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		return r, false, fmt.Errorf("fleet store: mac %s: %w", mac, err)
	}
	return r, true, nil
}
