package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/virtap/virtap/internal/fsutil"
)

// CorruptError says the database file cannot be read: bbolt refused it, or
// panicked on it (bbolt panics on some damaged pages, e.g. "invalid
// freelist page"). The store never lets such a panic out.
type CorruptError struct {
	Path  string
	Cause string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("store: %s is damaged (%s); run 'virtap gc' as root: it moves the file aside to %s.corrupt-TIME and rebuilds the records from the tags on virtap's devices",
		e.Path, e.Cause, e.Path)
}

// ErrCorrupt matches every *CorruptError with errors.Is.
var ErrCorrupt = errors.New("state database is damaged")

func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// openDB is bolt.Open plus a first read of every bucket, with bbolt's
// panics on a damaged file turned into a *CorruptError.
func openDB(path string, o *bolt.Options, first func(*bolt.DB) error) (db *bolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			if db != nil {
				_ = db.Close()
			}
			db, err = nil, &CorruptError{Path: path, Cause: fmt.Sprint(p)}
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	db, err = bolt.Open(path, 0o600, o)
	if err != nil {
		var pe *fs.PathError
		var errno syscall.Errno
		if errors.Is(err, berrors.ErrTimeout) || errors.As(err, &pe) || errors.As(err, &errno) {
			return nil, err
		}
		// bbolt's other refusals are about the content: "invalid
		// database", "file size too small", checksum, version.
		return nil, &CorruptError{Path: path, Cause: err.Error()}
	}
	if err := checkSize(path, db); err != nil {
		db.Close()
		return nil, err
	}
	if err := first(db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// checkSize refuses a file shorter than the pages its meta page counts: a
// page past the end would fault in the mmap, and bbolt's own Check reads
// pages in a goroutine where that fault is fatal.
func checkSize(path string, db *bolt.DB) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return db.View(func(tx *bolt.Tx) error {
		if tx.Size() > fi.Size() {
			return &CorruptError{Path: path, Cause: fmt.Sprintf("the file has %d bytes, its meta page counts %d", fi.Size(), tx.Size())}
		}
		return nil
	})
}

// guard runs a transaction function, turning a bbolt panic on a damaged
// page (met only when the page is read) into a *CorruptError.
func (s *Store) guard(run func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &CorruptError{Path: filepath.Join(s.dir, DBFile), Cause: fmt.Sprint(p)}
		}
	}()
	// A page past the end of a truncated file faults (SIGBUS) in the
	// mmap: a recoverable panic only with this set.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return run()
}

// MoveAside renames a damaged database in dir to virtap.db.corrupt-TIME
// (kept for inspection) and fsyncs the directory, so that the next Open
// starts an empty store. It takes the state lock first. It returns the
// new name ("" when there was no database).
func MoveAside(dir string, timeout time.Duration) (string, error) {
	if err := ensureDir(dir); err != nil {
		return "", err
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	lf, err := openNoFollow(filepath.Join(dir, LockFile), false)
	if err != nil {
		return "", fmt.Errorf("store: open lock file: %w", err)
	}
	defer lf.Close()
	if err := flockUntil(lf, true, time.Now().Add(timeout)); err != nil {
		return "", fmt.Errorf("store: lock %s: %w", dir, err)
	}
	src := filepath.Join(dir, DBFile)
	if _, err := os.Lstat(src); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	dst := fmt.Sprintf("%s.corrupt-%s", src, time.Now().UTC().Format("20060102T150405.000000000"))
	if err := os.Rename(src, dst); err != nil {
		return "", fmt.Errorf("store: move %s aside: %w", src, err)
	}
	return dst, fsutil.SyncDir(dir)
}
