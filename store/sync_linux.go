package store

import (
	"os"
	"syscall"
)

// syncData flushes an appended file's data and size (fdatasync: the size is
// metadata needed to read the data back, so it is flushed too) without the
// other inode metadata fsync would also write.
func syncData(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
