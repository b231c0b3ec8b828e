package image

import (
	"bytes"
	"fmt"
	"io"
	"sort"
)

// cpioEntry is one member of a newc ("070701") cpio archive.
type cpioEntry struct {
	Name     string // without leading slash
	Mode     uint32 // full st_mode, type bits included
	Data     []byte // file content or symlink target
	RdevMaj  uint32
	RdevMin  uint32
	inodeNum uint32
}

const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
	modeChar    = 0o020000
)

// writeCpio writes entries as a newc archive (the format the kernel unpacks
// into its initramfs), parents before children, ending with the trailer.
func writeCpio(w io.Writer, entries []cpioEntry) error {
	sorted := append([]cpioEntry(nil), entries...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var buf bytes.Buffer
	for i, e := range sorted {
		e.inodeNum = uint32(i + 1)
		if err := writeCpioEntry(&buf, e); err != nil {
			return err
		}
	}
	if err := writeCpioEntry(&buf, cpioEntry{Name: "TRAILER!!!"}); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

func writeCpioEntry(buf *bytes.Buffer, e cpioEntry) error {
	if e.Name == "" {
		return fmt.Errorf("cpio: empty name")
	}
	nlink := uint32(1)
	if e.Mode&0o170000 == modeDir {
		nlink = 2
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize, check
	fmt.Fprintf(buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		e.inodeNum, e.Mode, 0, 0, nlink, 0, len(e.Data), 0, 0, e.RdevMaj, e.RdevMin, len(e.Name)+1, 0)
	buf.WriteString(e.Name)
	buf.WriteByte(0)
	pad4(buf)
	buf.Write(e.Data)
	pad4(buf)
	return nil
}

func pad4(buf *bytes.Buffer) {
	for buf.Len()%4 != 0 {
		buf.WriteByte(0)
	}
}
