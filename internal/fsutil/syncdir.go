package fsutil

import "os"

// SyncDir fsyncs a directory, so that entries created, renamed or removed
// in it survive a power cut (a file's own fsync does not cover its name).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
