package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goodDB makes a store with records, reservations and leases, closes it
// and returns the database file's bytes.
func goodDB(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir, Options{Timeout: 5 * time.Second, BootID: "0b1c2d3e-0000-4000-8000-000000000001"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		if err := s.PutIface(uuidN(i), "g", Iface{MAC: macN(i), Kind: "ipvtap", Device: "vt" + macN(i)[9:11] + macN(i)[12:14] + macN(i)[15:], State: StateReady}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Reserve("pool", []string{"0000:01:00.1", "0000:01:00.2"}, Holder{UUID: uuidN(1), MAC: macN(1)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	b, err := os.ReadFile(filepath.Join(dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// meta reads the newer of bbolt's two meta pages: page size and the
// freelist's page id (bbolt's on-disk layout: page header 16 bytes, then
// magic, version, page size, flags, root bucket (root pgid, sequence),
// freelist pgid, high water mark, txid, checksum).
func meta(t testing.TB, db []byte) (pageSize int, freelist uint64) {
	t.Helper()
	var bestTx uint64
	for _, off := range []int{0, 4096} {
		if off+16+64 > len(db) {
			continue
		}
		m := db[off+16:]
		ps := int(binary.LittleEndian.Uint32(m[8:]))
		if off != 0 && off != ps {
			continue
		}
		tx := binary.LittleEndian.Uint64(m[48:])
		if tx >= bestTx {
			bestTx, pageSize, freelist = tx, ps, binary.LittleEndian.Uint64(m[32:])
		}
	}
	if pageSize == 0 || freelist < 2 {
		t.Fatalf("no meta page (page size %d, freelist %d)", pageSize, freelist)
	}
	return pageSize, freelist
}

func damaged(t *testing.T) map[string][]byte {
	good := goodDB(t)
	ps, fl := meta(t, good)
	zeroFree := bytes.Clone(good)
	clear(zeroFree[int(fl)*ps : int(fl+1)*ps])
	// Every page after the meta pages zeroed: the meta page (checksum
	// valid) points at nothing, what a power cut after an unsynced commit
	// leaves.
	zeroData := bytes.Clone(good)
	clear(zeroData[2*ps:])
	random := make([]byte, 64<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	return map[string][]byte{
		"truncated to one page":   good[:ps],
		"truncated after meta":    good[:2*ps+100],
		"truncated mid-page":      good[:int(fl)*ps+ps/2],
		"random bytes":            random,
		"zeroed freelist page":    zeroFree,
		"zeroed pages after meta": zeroData,
		"empty":                   {},
	}
}

// A damaged database gives a clear error naming the file and the fix,
// never a panic (bbolt panics on some of these: "invalid freelist page");
// gc's recovery moves it aside and an empty store opens.
func TestDamagedDatabaseNeverPanics(t *testing.T) {
	for name, data := range damaged(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, DBFile)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			err := openAndRead(dir)
			if name == "empty" {
				if err != nil {
					t.Fatalf("an empty file is a new store: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("want ErrCorrupt, got %v", err)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "virtap gc") {
				t.Fatalf("error does not name the file and the fix: %v", err)
			}
			t.Logf("%v", err)
			moved, err := MoveAside(dir, time.Second)
			if err != nil || !strings.HasPrefix(moved, path+".corrupt-") {
				t.Fatalf("move aside: %q %v", moved, err)
			}
			if b, _ := os.ReadFile(moved); !bytes.Equal(b, data) {
				t.Fatal("the damaged file was not kept as it was")
			}
			if err := openAndRead(dir); err != nil {
				t.Fatalf("after moving it aside: %v", err)
			}
		})
	}
}

// openAndRead opens the store and reads every record the way gc does.
func openAndRead(dir string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errors.New("PANIC: " + strings.SplitN(strings.TrimSpace(string(toString(p))), "\n", 2)[0])
		}
	}()
	s, err := Open(dir, Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Domains(); err != nil {
		return err
	}
	if _, err := s.Pools(); err != nil {
		return err
	}
	_, err = s.Check()
	return err
}

func toString(p any) string {
	if e, ok := p.(error); ok {
		return e.Error()
	}
	if s, ok := p.(string); ok {
		return s
	}
	return "panic"
}

func TestStateDirectoryOwnerAndMode(t *testing.T) {
	base := t.TempDir()
	open := func(dir string) error {
		s, err := Open(dir, Options{NoSync: true, Timeout: time.Second})
		if err == nil {
			s.Close()
		}
		return err
	}
	wide := filepath.Join(base, "wide")
	os.Mkdir(wide, 0o700)
	os.Chmod(wide, 0o777)
	if err := open(wide); err == nil || !strings.Contains(err.Error(), "writable by group or others") || !strings.Contains(err.Error(), "chmod 0700 "+wide) {
		t.Fatalf("a world-writable state directory: %v", err)
	}
	if ents, _ := os.ReadDir(wide); len(ents) != 0 {
		t.Fatalf("refused, yet it created %v", ents)
	}
	readable := filepath.Join(base, "readable")
	os.Mkdir(readable, 0o755)
	if err := open(readable); err != nil {
		t.Fatalf("a 0755 state directory is narrowed, not refused: %v", err)
	}
	assertMode(t, readable, 0o700)
	link := filepath.Join(base, "link")
	os.Symlink(readable, link)
	if err := open(link); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("a symlinked state directory: %v", err)
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root under CI")
		}
		t.Skip("owner check needs root to chown")
	}
	foreign := filepath.Join(base, "foreign")
	os.Mkdir(foreign, 0o700)
	if err := os.Chown(foreign, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := open(foreign); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("a state directory owned by another user: %v", err)
	}
}

func TestRecordsCarryTheBootID(t *testing.T) {
	dir := t.TempDir()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "proc/sys/kernel/random"), 0o755)
	os.WriteFile(filepath.Join(root, "proc/sys/kernel/random/boot_id"), []byte("6F1C4E36-2D6B-4E59-9D0A-0000000000AA\n"), 0o444)
	id, err := ReadBootID(root)
	if err != nil || id != "6f1c4e36-2d6b-4e59-9d0a-0000000000aa" {
		t.Fatalf("boot id %q %v", id, err)
	}
	if real, err := ReadBootID("/"); err != nil || len(real) != 36 {
		t.Fatalf("this host's boot id: %q %v", real, err)
	}
	s, err := Open(dir, Options{NoSync: true, BootID: id})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.PutIface(uuidN(1), "a", Iface{MAC: macN(1), State: StateReady})
	s.Reserve("p", []string{"d0"}, Holder{UUID: uuidN(1), MAC: macN(1)})
	d, _, _ := s.GetDomain(uuidN(1))
	rs, _ := s.Reservations("p")
	if d.Boot != id || len(rs) != 1 || rs[0].Boot != id {
		t.Fatalf("record boot %q, reservation %+v", d.Boot, rs)
	}
}

// FuzzOpen: the store's open path (and a first read of everything) on an
// arbitrary file returns a store or an error, never panics.
func FuzzOpen(f *testing.F) {
	good := goodDB(f)
	f.Add(good)
	f.Add(good[:4096])
	f.Add([]byte("not a database"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, DBFile), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := openAndRead(dir); err != nil && strings.HasPrefix(err.Error(), "PANIC") {
			t.Fatal(err)
		}
	})
}
