package host

import (
	"errors"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"

	"github.com/virtap/virtap/internal/netdev"
	"github.com/virtap/virtap/internal/nft"
	"github.com/virtap/virtap/internal/paths"
	"github.com/virtap/virtap/internal/store"
)

// Snapshot is what gc learnt from libvirt: which domains run and which are
// defined (nil: unknown, keep leases).
type Snapshot struct {
	Running func(uuid.UUID) bool
	Defined func(uuid.UUID) bool
	Live    []*Guest // running guests with their live XML (filters to restore)
}

// GCRun is one gc over a state directory. Query asks libvirt; it cannot
// run under the state lock (a starting guest's prepare hook holds libvirt's
// domain lock and waits for the state lock: a deadlock), so a prepare can
// run between the snapshot and gc's lock. gc therefore reads the store's
// transaction id before it asks libvirt, and under the lock treats every
// domain whose record was written after that id as running: a guest that
// started in the window keeps its devices, VF and filter.
type GCRun struct {
	Log      hclog.Logger
	Net      *netdev.Manager
	StateDir string
	Store    store.Options
	Roots    paths.Roots
	Query    func() (Snapshot, error)
	DryRun   bool
	// After, if set, runs last under the lock (the fleet's leases).
	After func(r *Realiser, snap Snapshot) ([]GCAction, error)
}

// Run does the gc: sequence number, snapshot, lock, collect.
func (c GCRun) Run() ([]GCAction, error) {
	before, err := storeSeq(c.StateDir, c.Store)
	if err != nil {
		return nil, err
	}
	snap, err := c.Query()
	if err != nil {
		return nil, err
	}
	st, err := store.Open(c.StateDir, c.Store)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	running, err := runningOrNewer(st, before, snap.Running)
	if err != nil {
		return nil, err
	}
	r := New(c.Log, c.Net, st, c.Roots)
	acts, gcErr := r.GC(running, snap.Defined, c.DryRun)
	restored, err := r.RestoreFilters(snap.Live, c.DryRun)
	acts, gcErr = append(acts, restored...), errors.Join(gcErr, err)
	if c.After != nil {
		more, err := c.After(r, snap)
		acts, gcErr = append(acts, more...), errors.Join(gcErr, err)
	}
	return acts, gcErr
}

// storeSeq is the store's last transaction id (taking the lock briefly).
func storeSeq(dir string, o store.Options) (uint64, error) {
	st, err := store.Open(dir, o)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	return st.Seq()
}

// runningOrNewer: running, or recorded after transaction before.
func runningOrNewer(st *store.Store, before uint64, running func(uuid.UUID) bool) (func(uuid.UUID) bool, error) {
	doms, err := st.Domains()
	if err != nil {
		return nil, err
	}
	newer := map[uuid.UUID]bool{}
	for _, d := range doms {
		if u, err := uuid.Parse(d.UUID); err == nil && d.Seq > before {
			newer[u] = true
		}
	}
	return func(u uuid.UUID) bool { return newer[u] || running(u) }, nil
}

// ThisBoot is the snapshot of gc without libvirt (--no-libvirt): a domain
// counts as running when its record was written in this boot (the kernel
// boot id), or a device or filter table tagged for it exists (neither
// survives a reboot). So at boot every record of the previous boot goes,
// and on a live host nothing of this boot's guests is touched.
func ThisBoot(st *store.Store, nd *netdev.Manager, log hclog.Logger) (Snapshot, error) {
	live := map[uuid.UUID]bool{}
	doms, err := st.Domains()
	if err != nil {
		return Snapshot{}, err
	}
	for _, d := range doms {
		if u, err := uuid.Parse(d.UUID); err == nil && d.Boot != "" && d.Boot == st.BootID() {
			live[u] = true
		}
	}
	devs, err := nd.List()
	if err != nil {
		return Snapshot{}, err
	}
	for _, dv := range devs {
		if u, ok := dv.Tag.Domain(); ok {
			live[u] = true
		}
	}
	tables, err := nft.New(log).Domains()
	if err != nil {
		return Snapshot{}, err
	}
	for _, u := range tables {
		live[u] = true
	}
	return Snapshot{Running: func(u uuid.UUID) bool { return live[u] }}, nil
}
