package netconf

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// HostKeyFile is the SSH host key's file name in the data dir.
const HostKeyFile = "netconf_host_key"

// LoadHostKey reads the SSH host key at path, generating an Ed25519 key
// (mode 0600) when the file does not exist. generated says which.
func LoadHostKey(path string) (signer ssh.Signer, generated bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := generateHostKey(path); err != nil {
			return nil, false, err
		}
		generated = true
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, false, fmt.Errorf("netconf: host key: %w", err)
	}
	signer, err = ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, false, fmt.Errorf("netconf: host key %s: %w", path, err)
	}
	return signer, generated, nil
}

func generateHostKey(path string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("netconf: generate host key: %w", err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "spiagent netconf host key")
	if err != nil {
		return fmt.Errorf("netconf: encode host key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("netconf: host key dir: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("netconf: write host key: %w", err)
	}
	if err := pem.Encode(f, blk); err != nil {
		f.Close()
		return fmt.Errorf("netconf: write host key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("netconf: write host key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("netconf: write host key: %w", err)
	}
	return nil
}
