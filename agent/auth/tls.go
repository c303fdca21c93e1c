package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Names of the generated certificate and key in the data directory.
const (
	GeneratedCertFile = "gnmi-cert.pem"
	GeneratedKeyFile  = "gnmi-key.pem"
)

// certValidity is the lifetime of a generated certificate.
const certValidity = 10 * 365 * 24 * time.Hour

// Fingerprint is the SHA-256 of a certificate's DER, as colon-separated hex
// (the form `openssl x509 -fingerprint -sha256` prints).
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// ServerCert is the certificate the server presents.
type ServerCert struct {
	Cert        tls.Certificate
	Fingerprint string
	Generated   bool // true if created by this call
	CertFile    string
}

// LoadServerCert loads certFile and keyFile if given; otherwise it loads
// the certificate generated earlier in dataDir, generating a self-signed one
// (ECDSA P-256, for localhost, the loopback addresses and the host name) the
// first time.
func LoadServerCert(certFile, keyFile, dataDir string) (*ServerCert, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("auth: give both a certificate and a key, or neither")
	}
	generated := false
	if certFile == "" {
		certFile = filepath.Join(dataDir, GeneratedCertFile)
		keyFile = filepath.Join(dataDir, GeneratedKeyFile)
		_, err := os.Stat(certFile)
		if errors.Is(err, fs.ErrNotExist) {
			if err := GenerateSelfSigned(certFile, keyFile); err != nil {
				return nil, err
			}
			generated = true
		}
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("auth: load TLS certificate: %w", err)
	}
	return &ServerCert{Cert: c, Fingerprint: Fingerprint(c.Certificate[0]), Generated: generated, CertFile: certFile}, nil
}

// GenerateSelfSigned writes a new self-signed certificate and its key
// (mode 0600).
func GenerateSelfSigned(certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("auth: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("auth: serial: %w", err)
	}
	host, _ := os.Hostname()
	dns := []string{"localhost"}
	if host != "" && host != "localhost" {
		dns = append(dns, host)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "spiagent " + host, Organization: []string{"spiagent"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              dns,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("auth: create certificate: %w", err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("auth: marshal key: %w", err)
	}
	// Key first: a certificate without its key would be loaded and fail.
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// ServerTLSConfig is the TLS configuration of the gNMI server: TLS 1.2 or
// later, and if clientCAFile is given, a client certificate signed by one
// of its CAs is required.
func ServerTLSConfig(cert *ServerCert, clientCAFile string) (*tls.Config, error) {
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert.Cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2"},
	}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("auth: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("auth: client CA %s: no PEM certificates", clientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
