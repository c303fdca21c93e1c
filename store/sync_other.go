//go:build !linux

package store

import "os"

func syncData(f *os.File) error { return f.Sync() }

func lockDir(dir string) (*os.File, error) {
	return os.OpenFile(dir+"/LOCK", os.O_CREATE|os.O_RDWR, 0o600)
}
