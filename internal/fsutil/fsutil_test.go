package fsutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.xml")
	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteAtomic(p, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(b) != "new" || fi.Mode().Perm() != 0o644 {
		t.Fatalf("%q %v", b, fi.Mode())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

// The error names the path the caller gave, not a temporary file.
func TestWriteAtomicNamesThePath(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nonexistent", "dir", "x.xml")
	err := WriteAtomic(p, []byte("x"), 0o644)
	if err == nil || !strings.Contains(err.Error(), "write "+p+": directory "+filepath.Dir(p)+" does not exist") || strings.Contains(err.Error(), ".x.xml") {
		t.Fatalf("got %v", err)
	}
}
