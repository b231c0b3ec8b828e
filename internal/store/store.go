// Package store is virtap's embedded state store: what the hook made on this
// host (devices per guest interface), which guest holds which device of a
// device pool (VF pools), and which guest holds which address of an IP pool.
//
// The store is a single bbolt file, <dir>/virtap.db (0600) in a state
// directory created 0700. Nothing else is ever created in that directory
// except the lock file <dir>/virtap.lock; guest names and pool names are
// values and bucket keys, never paths.
//
// # Concurrency
//
// libvirtd execs the hook several times per guest start and stop, possibly for
// several guests at once. Every Open takes an flock on virtap.lock (exclusive
// for read-write, shared for ReadOnly) with a short back-off, bounded by
// Options.Timeout, and keeps it until Close. Hook processes therefore
// serialise; they should Open, do their few transactions, and Close. Within one
// process a *Store is safe for concurrent use.
//
// # Keys
//
// Everything about a guest is keyed by its domain UUID in canonical lower-case
// form (any form google/uuid parses is accepted and normalised); a name is only
// a label. MAC addresses are normalised to lower-case colon form.
//
// # Crash safety: write-ahead intent records
//
// Each exported mutating call is one bbolt transaction (fsynced unless
// Options.NoSync), so a SIGKILL leaves either the old or the new state, and
// the indexes always agree with the records. Multi-step host changes use the
// interface record itself as the intent:
//
//	PutIface(uuid, name, Iface{..., Device: "vt-ab12", State: StatePending})
//	... create the host device ...
//	SetIfaceState(uuid, mac, StateReady)
//
// and on release
//
//	SetIfaceState(uuid, mac, StateReleasing)
//	... delete the host device ...
//	RemoveIface(uuid, mac)
//
// gc then finds both kinds of leftovers: Pending lists records whose host change
// may or may not have happened (finish or undo them), Domains/DeviceOwner let it
// match host devices tagged as virtap's against records (orphaned devices) and
// records against host devices (records pointing at nothing). Reservations are
// their own intent: Reserve happens before a VF is programmed, and the previous
// VF settings are saved with AnnotateReservation before the first change.
// Check reports any disagreement between records and indexes and Repair
// rebuilds the indexes from the records.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	bolt "go.etcd.io/bbolt"

	"github.com/virtap/virtap/internal/fsutil"
)

const (
	// DBFile is the name of the database file inside the state directory.
	DBFile = "virtap.db"
	// LockFile is the name of the lock file inside the state directory.
	LockFile = "virtap.lock"
	// DefaultTimeout bounds how long Open waits for other virtap processes.
	DefaultTimeout = 10 * time.Second
	// SchemaVersion is the layout version written to the meta bucket.
	SchemaVersion = 1
)

// Bucket names. Primary records: domains, res, leases. Indexes (rebuilt by
// Repair from the primaries): devices, pending, resh, leaseh.
var (
	bMeta    = []byte("meta")
	bDomains = []byte("domains") // uuid -> json Domain
	bDevices = []byte("devices") // device -> uuid \x00 mac
	bPending = []byte("pending") // uuid \x00 mac -> state (only non-ready ifaces)
	bRes     = []byte("res")     // pool/ device -> json Reservation
	bResH    = []byte("resh")    // uuid/ pool \x00 mac -> device
	bLeases  = []byte("leases")  // network/ addr(16 bytes) -> json Lease
	bLeaseH  = []byte("leaseh")  // uuid/ network \x00 mac -> addr(16 bytes)

	allBuckets = [][]byte{bMeta, bDomains, bDevices, bPending, bRes, bResH, bLeases, bLeaseH}
)

// Options configure Open.
type Options struct {
	// Timeout bounds the wait for the lock held by other virtap processes;
	// zero or negative means DefaultTimeout.
	Timeout time.Duration
	// NoSync skips fsync after each transaction. A killed process loses
	// nothing (the page cache survives it), but a power cut can leave a
	// meta page on disk that points at data pages that never reached it
	// (bbolt's ordering is two fsyncs per commit): a damaged file. For
	// tests only; virtap itself never turns it on.
	NoSync bool
	// ReadOnly takes a shared lock and refuses every write. The database
	// must exist (the error then wraps fs.ErrNotExist).
	ReadOnly bool
	// Logger receives debug logs under the name "store"; nil discards them.
	Logger hclog.Logger
	// BootID is written into every domain record; empty: read it from
	// /proc/sys/kernel/random/boot_id (ReadBootID).
	BootID string
}

// ErrReadOnly is returned by writes on a store opened with ReadOnly.
var ErrReadOnly = errors.New("store is open read-only")

// ErrLockTimeout is returned when another virtap process held the state
// lock for longer than Options.Timeout.
var ErrLockTimeout = errors.New("timed out waiting for the virtap state lock")

// Store is an open state store.
type Store struct {
	db       *bolt.DB
	lock     *os.File
	dir      string
	readOnly bool
	log      hclog.Logger
	now      func() time.Time
	boot     string // this boot's id, written into domain records
}

// Open opens (creating if needed, unless ReadOnly) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("store: empty state directory")
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("store")
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	deadline := time.Now().Add(timeout)

	if opts.ReadOnly {
		if _, err := os.Stat(filepath.Join(dir, DBFile)); err != nil {
			return nil, fmt.Errorf("store: open %s read-only: %w", dir, err)
		}
	} else if err := ensureDir(dir); err != nil {
		return nil, err
	}

	lockPath := filepath.Join(dir, LockFile)
	lf, err := openNoFollow(lockPath, opts.ReadOnly)
	if err != nil {
		return nil, fmt.Errorf("store: open lock file: %w", err)
	}
	if err := flockUntil(lf, !opts.ReadOnly, deadline); err != nil {
		lf.Close()
		return nil, fmt.Errorf("store: lock %s: %w", lockPath, err)
	}

	dbPath := filepath.Join(dir, DBFile)
	if fi, err := os.Lstat(dbPath); err == nil && !fi.Mode().IsRegular() {
		lf.Close()
		return nil, fmt.Errorf("store: %s is not a regular file", dbPath)
	}
	rest := time.Until(deadline)
	if rest < 100*time.Millisecond {
		rest = 100 * time.Millisecond
	}
	_, statErr := os.Lstat(dbPath)
	first := func(db *bolt.DB) error {
		if opts.ReadOnly {
			return db.View(checkVersion)
		}
		// Only the first open writes: an Update commits (and fsyncs) even
		// when it changes nothing.
		if db.View(checkBuckets) != nil {
			return db.Update(initBuckets)
		}
		return nil
	}
	db, err := openDB(dbPath, &bolt.Options{
		Timeout:      rest,
		NoSync:       opts.NoSync,
		ReadOnly:     opts.ReadOnly,
		FreelistType: bolt.FreelistMapType,
	}, first)
	if err != nil {
		lf.Close()
		var ce *CorruptError
		if errors.As(err, &ce) {
			return nil, err
		}
		return nil, fmt.Errorf("store: open %s: %w", dbPath, err)
	}
	s := &Store{db: db, lock: lf, dir: dir, readOnly: opts.ReadOnly, log: log, now: time.Now, boot: opts.BootID}
	if s.boot == "" {
		s.boot, _ = ReadBootID("/")
	}
	if !opts.ReadOnly {
		if err := os.Chmod(dbPath, 0o600); err != nil {
			s.Close()
			return nil, fmt.Errorf("store: chmod %s: %w", dbPath, err)
		}
		if errors.Is(statErr, fs.ErrNotExist) {
			// A new file: its name must survive a power cut too.
			if err := fsutil.SyncDir(dir); err != nil {
				s.Close()
				return nil, fmt.Errorf("store: sync %s: %w", dir, err)
			}
		}
	}
	log.Debug("opened state store", "dir", dir, "read_only", opts.ReadOnly)
	return s, nil
}

// Close releases the database and the lock. Safe to call twice.
func (s *Store) Close() error {
	if s == nil || s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	if s.lock != nil {
		_ = syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN)
		if cerr := s.lock.Close(); err == nil {
			err = cerr
		}
		s.lock = nil
	}
	return err
}

// Dir is the state directory.
func (s *Store) Dir() string { return s.dir }

// ensureDir creates the state directory (0700, its new entry fsynced) or
// checks an existing one: it must be a directory owned by this user (root
// for the hook) and not writable by group or others, or someone else could
// have planted or swapped files in it; such a directory is refused, not
// repaired. A directory merely readable by others is narrowed to 0700.
func ensureDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("store: create state directory: %w", err)
		}
		if err := fsutil.SyncDir(filepath.Dir(dir)); err != nil {
			return fmt.Errorf("store: sync %s: %w", filepath.Dir(dir), err)
		}
		fi, err = os.Lstat(dir)
	}
	if err != nil {
		return fmt.Errorf("store: state directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("store: state directory %s is not a directory (a symlink is refused too)", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("store: state directory %s is owned by uid %d, not by uid %d (root for the hook); virtap refuses it: check who made it, then chown root:root %s or pick another --state-dir",
			dir, st.Uid, os.Geteuid(), dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("store: state directory %s has mode %04o: writable by group or others, so its files cannot be trusted; virtap refuses it: check its contents, then chmod 0700 %s",
			dir, fi.Mode().Perm(), dir)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("store: chmod state directory: %w", err)
		}
	}
	return nil
}

func openNoFollow(path string, readOnly bool) (*os.File, error) {
	flag := os.O_RDWR | os.O_CREATE | syscall.O_NOFOLLOW | syscall.O_CLOEXEC
	if readOnly {
		// A reader must not create files; if a writer never ran, there is
		// no database either and Open failed earlier.
		flag = os.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_CLOEXEC
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil && readOnly && errors.Is(err, fs.ErrNotExist) {
		// The database exists but the lock file does not (copied state):
		// a shared lock on the database's directory is just as good.
		return os.Open(filepath.Dir(path))
	}
	if err == nil && !readOnly {
		_ = f.Chmod(0o600)
	}
	return f, err
}

// flockUntil takes the flock with a short randomised back-off (1 ms growing
// to 10 ms) so that waiting hook processes proceed in milliseconds, not in
// bbolt's fixed 50 ms steps.
func flockUntil(f *os.File, exclusive bool, deadline time.Time) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	wait := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if err != syscall.EWOULDBLOCK && err != syscall.EINTR {
			return err
		}
		if time.Now().After(deadline) {
			return ErrLockTimeout
		}
		time.Sleep(wait/2 + rand.N(wait))
		if wait < 10*time.Millisecond {
			wait += wait / 2
		}
	}
}

func initBuckets(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bMeta)
	if v := meta.Get([]byte("version")); v == nil {
		return meta.Put([]byte("version"), []byte(fmt.Sprint(SchemaVersion)))
	}
	return checkVersion(tx)
}

func checkBuckets(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("bucket %s missing", name)
		}
	}
	return checkVersion(tx)
}

func checkVersion(tx *bolt.Tx) error {
	meta := tx.Bucket(bMeta)
	if meta == nil {
		return errors.New("not a virtap state database (no meta bucket)")
	}
	v := string(meta.Get([]byte("version")))
	if v != fmt.Sprint(SchemaVersion) {
		return fmt.Errorf("state database has schema version %q, this virtap understands %d", v, SchemaVersion)
	}
	return nil
}

func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	if s.db == nil {
		return errors.New("store: closed")
	}
	if s.readOnly {
		return ErrReadOnly
	}
	return s.guard(func() error { return s.db.Update(fn) })
}

func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	if s.db == nil {
		return errors.New("store: closed")
	}
	return s.guard(func() error { return s.db.View(fn) })
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

func join(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	out := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			out = append(out, 0)
		}
		out = append(out, p...)
	}
	return out
}

func split2(k []byte) (string, string, bool) {
	for i, c := range k {
		if c == 0 {
			return string(k[:i]), string(k[i+1:]), true
		}
	}
	return string(k), "", false
}
