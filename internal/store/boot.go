package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// ReadBootID reads the kernel's boot id under root ("/" on a host):
// ROOT/proc/sys/kernel/random/boot_id, a UUID that changes at every boot.
// Records carry it, so that gc without libvirt can tell a record of a
// previous boot (its guest cannot be running) from one of this boot.
func ReadBootID(root string) (string, error) {
	p := filepath.Join(root, "proc/sys/kernel/random/boot_id")
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	u, err := uuid.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("%s: %v", p, err)
	}
	return u.String(), nil
}

// BootID is the boot id this store writes into records ("" if unknown).
func (s *Store) BootID() string { return s.boot }

// Seq is the id of the last committed transaction: every record written
// later carries a larger Seq.
func (s *Store) Seq() (uint64, error) {
	var seq uint64
	err := s.view(func(tx *bolt.Tx) error { seq = uint64(tx.ID()); return nil })
	return seq, err
}
