package hooks

import (
	"bytes"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"

	"github.com/virtap/virtap/host"
	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/store"
)

// headScan bounds the search for <uuid> in a document too large to parse:
// libvirt writes <name> and <uuid> first, and escapes '<' in the name, so
// the first <uuid> of the head is the domain's.
const headScan = 64 << 10

// UUIDFromHead finds the domain UUID in the first headScan bytes of a
// domain document, without parsing it.
func UUIDFromHead(doc []byte) (uuid.UUID, bool) {
	head := doc[:min(len(doc), headScan)]
	_, rest, ok := bytes.Cut(head, []byte("<uuid>"))
	if !ok {
		return uuid.UUID{}, false
	}
	val, _, ok := bytes.Cut(rest, []byte("</uuid>"))
	if !ok || len(val) > 64 {
		return uuid.UUID{}, false
	}
	u, err := uuid.Parse(string(bytes.TrimSpace(val)))
	return u, err == nil
}

// ReleaseOversize releases a domain whose XML is over domain.MaxSize (live
// metadata grows): nothing in the document is needed to release, only the
// UUID (found in the head, or by the name libvirt gives in argv among the
// store's records). Everything recorded or tagged for it is freed: devices,
// VF reservations, leases' holders, filters. It never fails the hook.
func ReleaseOversize(cfg Config, req Request, head []byte) error {
	log := cfg.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("hook").With("op", req.Op, "domain", req.Domain)
	st, err := store.Open(cfg.StateDir, store.Options{Timeout: cfg.LockTimeout, NoSync: cfg.NoSync, Logger: log})
	if err != nil {
		log.Error("release of an oversized domain XML: cannot open state; run 'virtap gc' later", "error", err)
		return nil
	}
	defer st.Close()
	u, ok := UUIDFromHead(head)
	if !ok {
		u, ok = uuidByName(st, req.Domain)
	}
	if !ok {
		log.Warn("domain XML over the size limit and no UUID found in its head or the store; nothing released ('virtap gc' will)")
		return nil
	}
	r := host.New(log, netdev.New(log, nil), st, cfg.roots())
	if err := r.Release(&host.Guest{UUID: u, Name: req.Domain}); err != nil {
		log.Error("release left something behind; 'virtap gc' removes it", "error", err)
	}
	return nil
}

// uuidByName finds the one recorded domain with this name.
func uuidByName(st *store.Store, name string) (uuid.UUID, bool) {
	doms, err := st.Domains()
	if err != nil {
		return uuid.UUID{}, false
	}
	var found []uuid.UUID
	for _, d := range doms {
		if d.Name == name {
			if u, err := uuid.Parse(d.UUID); err == nil {
				found = append(found, u)
			}
		}
	}
	if len(found) != 1 {
		return uuid.UUID{}, false
	}
	return found[0], true
}

// Releases says whether op frees the guest's host state (stopped, release):
// those run even when the document is too large to read.
func Releases(op string) bool { return op == "release" || op == "stopped" }
