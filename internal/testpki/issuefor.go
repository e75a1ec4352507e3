package testpki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"path/filepath"
	"time"
)

// IssueFor signs a leaf for a public key whose private half the caller
// holds elsewhere (a PKCS#11 token, say), and writes NAME.crt into the CA's
// directory, replacing a file of the same name atomically. o.KeyType is
// ignored. The Leaf has no Key, KeyPEM, KeyFile or Combined.
func (ca *CA) IssueFor(name string, pub crypto.PublicKey, o Options) *Leaf {
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().Add(24 * time.Hour)
	}
	if o.CN == "" {
		o.CN = name
	}
	var eku []x509.ExtKeyUsage
	if o.Server || !o.Client {
		eku = append(eku, x509.ExtKeyUsageServerAuth)
	}
	if o.Client || !o.Server {
		eku = append(eku, x509.ExtKeyUsageClientAuth)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: o.CN, OrganizationalUnit: o.OU},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  eku,
		DNSNames:     o.DNS,
		IPAddresses:  o.IPs,
	}
	for _, u := range o.URIs {
		pu, err := url.Parse(u)
		must(err)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	must(err)
	cert, err := x509.ParseCertificate(der)
	must(err)
	l := &Leaf{Cert: cert, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	l.CertFile = filepath.Join(ca.Dir, name+".crt")
	writeAtomic(l.CertFile, l.CertPEM, 0o644)
	return l
}
