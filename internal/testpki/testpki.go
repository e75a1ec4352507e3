// Package testpki makes throwaway certificate authorities and leaf
// certificates for tests, written as PEM files into a directory. Nothing it
// makes is committed: every test generates what it needs.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// KeyType selects the leaf's key algorithm.
type KeyType int

// Key algorithms.
const (
	ECDSA KeyType = iota // P-256, the default
	RSA                  // 2048 bits
	Ed25519
)

// CA is a certificate authority that signs leaves.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	Dir     string // where files are written
	Name    string
	// CAFile is the path of the CA certificate PEM.
	CAFile string
}

// Leaf is a signed certificate with its key, and the files holding them.
type Leaf struct {
	Cert     *x509.Certificate
	Key      crypto.Signer
	CertPEM  []byte // leaf then chain (without the root)
	KeyPEM   []byte
	CertFile string // CertPEM
	KeyFile  string // KeyPEM
	// Combined is a PEM keystore: chain then key.
	Combined string
}

// TLS returns the leaf as a tls.Certificate.
func (l *Leaf) TLS() tls.Certificate {
	c, err := tls.X509KeyPair(l.CertPEM, l.KeyPEM)
	if err != nil {
		panic(err)
	}
	return c
}

// WritePKCS12 writes the leaf and its key as a PKCS#12 keystore protected
// by pass (mode 0600) and returns path.
func (l *Leaf) WritePKCS12(path, pass string) string {
	der, err := pkcs12.Modern.Encode(l.Key, l.Cert, nil, pass)
	must(err)
	must(os.WriteFile(path, der, 0o600))
	return path
}

// Options of a leaf certificate.
type Options struct {
	CN        string
	OU        []string
	DNS       []string
	IPs       []net.IP
	URIs      []string
	KeyType   KeyType
	NotBefore time.Time // zero: an hour ago
	NotAfter  time.Time // zero: a day from now
	// Server and Client set the extended key usages; neither means both.
	Server, Client bool
}

var serial atomic.Int64

func init() { serial.Store(time.Now().UnixNano() & 0xffffffff) }

func newKey(kt KeyType) crypto.Signer {
	switch kt {
	case RSA:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		return k
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		must(err)
		return k
	default:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		return k
	}
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// NewCA makes a self-signed CA named name, valid for a day, and writes
// name.pem into dir.
func NewCA(dir, name string) *CA { return NewCAValidFor(dir, name, 24*time.Hour) }

// NewCAValidFor is NewCA with the CA valid for d from now.
func NewCAValidFor(dir, name string, d time.Duration) *CA {
	key := newKey(ECDSA)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"ghostunnel tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(d),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	must(err)
	cert, err := x509.ParseCertificate(der)
	must(err)
	ca := &CA{Cert: cert, Key: key, Dir: dir, Name: name,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	ca.CAFile = filepath.Join(dir, name+".pem")
	must(os.WriteFile(ca.CAFile, ca.CertPEM, 0o644))
	return ca
}

// Pool returns a cert pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue signs a leaf and writes NAME.crt, NAME.key and NAME.pem (combined)
// into the CA's directory, replacing files of the same name atomically.
func (ca *CA) Issue(name string, o Options) *Leaf {
	key := newKey(o.KeyType)
	l := ca.IssueFor(name, key.Public(), o)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	must(err)
	l.Key = key
	l.KeyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	l.KeyFile = filepath.Join(ca.Dir, name+".key")
	l.Combined = filepath.Join(ca.Dir, name+".pem")
	writeAtomic(l.KeyFile, l.KeyPEM, 0o600)
	writeAtomic(l.Combined, append(append([]byte{}, l.CertPEM...), l.KeyPEM...), 0o600)
	return l
}

func writeAtomic(path string, data []byte, mode os.FileMode) {
	tmp := fmt.Sprintf("%s.tmp%d", path, serial.Add(1))
	must(os.WriteFile(tmp, data, mode))
	must(os.Rename(tmp, path))
}

// Localhost is the usual server leaf: CN and DNS localhost, IP 127.0.0.1 and ::1.
func Localhost() Options {
	return Options{CN: "localhost", DNS: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}
}
