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

// lockDir takes an exclusive, non-blocking flock on dir/LOCK, so that two
// processes never use one data directory. The lock goes with the file.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(dir+"/LOCK", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if err == syscall.EWOULDBLOCK {
			return nil, errDirInUse
		}
		return nil, err
	}
	return f, nil
}
