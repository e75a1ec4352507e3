package tunnel

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// credentials are one generation of a tunnel's certificate, key and trust
// anchors. They are immutable once built; a reload builds a new value and
// publishes it only when everything parsed.
type credentials struct {
	cert *tls.Certificate // nil when the tunnel presents no certificate
	pool *x509.CertPool   // CA bundle, or the system pool
	// spiffe, with use-workload-api, supplies the certificate and the
	// peer verification instead (spiffe.go); pool only serves target-status.
	spiffe *workloadSource
}

// current is the certificate presented now (nil if none).
func (c *credentials) current() *tls.Certificate {
	if c == nil {
		return nil
	}
	if c.spiffe != nil {
		return c.spiffe.certificate()
	}
	return c.cert
}

// notAfter is the expiry of the leaf, or the zero time without one.
func (c *credentials) notAfter() time.Time {
	cert := c.current()
	if cert == nil || cert.Leaf == nil {
		return time.Time{}
	}
	return cert.Leaf.NotAfter
}

// LoadCredentials reads the certificate, key and CA bundle that t names. It
// is what a reload does, and what `ghostunnel validate` checks.
func loadCredentials(t *configs.Tunnel) (*credentials, error) {
	c := &credentials{}
	var err error
	switch {
	case t.PKCS11Module != "":
		// The chain from Cert, the private key in the token (pkcs11.go).
		c.cert, err = loadPKCS11Cert(t)
	case t.Keystore != "":
		c.cert, err = loadKeystore(t.Keystore, t.Storepass.Reveal())
	case t.Cert != "" || t.Key != "":
		c.cert, err = loadCertKey(t.Cert, t.Key)
	}
	if err != nil {
		return nil, err
	}
	c.pool, err = loadPool(t.CACert)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// loadPool returns the CA bundle at path, or the system pool without one.
// Both are shared (credcache.go) and must not be mutated.
func loadPool(path string) (*x509.CertPool, error) {
	if path == "" {
		// crypto/x509 loads the system roots once per process, so every
		// call would return a copy (~26 KB) of the same pool: share one.
		return poolCache.load(keyOf("system roots"), func() (*x509.CertPool, error) {
			p, err := x509.SystemCertPool()
			if err != nil {
				return nil, fmt.Errorf("loading system CA pool: %w", err)
			}
			return p, nil
		})
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA bundle: %w", err)
	}
	return poolCache.load(keyOf("CA bundle", data), func() (*x509.CertPool, error) {
		// Certificates Go cannot parse are skipped, as upstream does (a
		// system-style bundle may hold one); a cut-short block is not.
		if err := pemComplete(data); err != nil {
			return nil, fmt.Errorf("CA bundle %s: %w", path, err)
		}
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("CA bundle %s: no PEM certificates found", path)
		}
		return p, nil
	})
}

// loadCertKey returns the certificate and key at certPath and keyPath, with
// Leaf set. It is shared (credcache.go) and must not be mutated.
func loadCertKey(certPath, keyPath string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("reading certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	return certCache.load(keyOf("cert and key", certPEM, keyPEM), func() (*tls.Certificate, error) {
		if err := pemComplete(certPEM); err != nil {
			return nil, fmt.Errorf("certificate %s: %w", certPath, err)
		}
		if err := pemComplete(keyPEM); err != nil {
			return nil, fmt.Errorf("key %s: %w", keyPath, err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("certificate %s with key %s: %w", certPath, keyPath, err)
		}
		return withLeaf(&cert)
	})
}

// withLeaf sets c.Leaf if tls.X509KeyPair left it unset (GODEBUG
// x509keypairleaf=0), so that what is shared never needs a write later.
func withLeaf(c *tls.Certificate) (*tls.Certificate, error) {
	if c.Leaf != nil {
		return c, nil
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, err
	}
	c.Leaf = leaf
	return c, nil
}

// loadKeystore reads a PEM bundle (chain and key in one file), a PKCS#12
// keystore or a Java JCEKS/JKS keystore (jceks.go), told apart by content
// rather than by file name.
//
// The result is shared (credcache.go) and must not be mutated; the cache
// key covers the password, so another password never finds it.
func loadKeystore(path, pass string) (*tls.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading keystore: %w", err)
	}
	return certCache.load(keyOf("keystore", data, []byte(pass)), func() (*tls.Certificate, error) {
		return parseKeystore(path, data, pass)
	})
}

func parseKeystore(path string, data []byte, pass string) (*tls.Certificate, error) {
	if isJavaKeystore(data) {
		return loadJavaKeystore(path, data, pass)
	}
	if bytes.Contains(data, []byte("-----BEGIN")) {
		return parsePEMKeystore(path, data)
	}
	key, leaf, chain, err := pkcs12.DecodeChain(data, pass)
	if err != nil {
		return nil, fmt.Errorf("keystore %s: not a PEM bundle, and as PKCS#12: %w", path, err)
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: leaf, Certificate: [][]byte{leaf.Raw}}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	if err := checkKeyMatches(cert); err != nil {
		return nil, fmt.Errorf("keystore %s: %w", path, err)
	}
	return cert, nil
}

func parsePEMKeystore(path string, data []byte) (*tls.Certificate, error) {
	if err := pemComplete(data); err != nil {
		return nil, fmt.Errorf("keystore %s: %w", path, err)
	}
	var certPEM, keyPEM []byte
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		enc := pem.EncodeToMemory(b)
		switch {
		case b.Type == "CERTIFICATE":
			certPEM = append(certPEM, enc...)
		case b.Type == "PRIVATE KEY" || b.Type == "RSA PRIVATE KEY" || b.Type == "EC PRIVATE KEY":
			if keyPEM != nil {
				return nil, fmt.Errorf("keystore %s: more than one private key", path)
			}
			keyPEM = enc
		}
	}
	if certPEM == nil {
		return nil, fmt.Errorf("keystore %s: no certificate found", path)
	}
	if keyPEM == nil {
		return nil, fmt.Errorf("keystore %s: no private key found", path)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("keystore %s: %w", path, err)
	}
	return withLeaf(&cert)
}

// checkKeyMatches makes sure the private key belongs to the leaf, as
// tls.X509KeyPair does for PEM input.
func checkKeyMatches(c *tls.Certificate) error {
	pk, ok := c.PrivateKey.(crypto.Signer)
	if !ok {
		return errors.New("unsupported private key type")
	}
	type equaler interface{ Equal(x crypto.PublicKey) bool }
	eq, ok := pk.Public().(equaler)
	if !ok || !eq.Equal(c.Leaf.PublicKey) {
		return errors.New("private key does not match certificate")
	}
	return nil
}

// CheckCredentials loads the credentials t names without starting anything,
// and returns the leaf (nil when t has none). Used by `ghostunnel validate`.
func CheckCredentials(t *configs.Tunnel) (*x509.Certificate, error) {
	c, err := loadCredentials(t)
	if err != nil {
		return nil, err
	}
	if c.cert == nil {
		return nil, nil
	}
	return c.cert.Leaf, nil
}

// CheckPolicies loads and compiles the OPA policies t names (allow-policy,
// verify-policy), as starting the tunnel would: what `ghostunnel validate`
// checks besides the credentials.
func CheckPolicies(t *configs.Tunnel) error {
	if _, err := loadPolicy(t.AllowPolicy, t.AllowQuery, t.ConnectTimeout.D()); err != nil {
		return err
	}
	_, err := loadPolicy(t.VerifyPolicy, t.VerifyQuery, t.ConnectTimeout.D())
	return err
}

// insecureFileModes returns the credential files of t that group or others
// can read, which is worth a warning at startup.
func insecureFileModes(t *configs.Tunnel) []string {
	var out []string
	for _, p := range []string{t.Keystore, t.Key} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o077 != 0 {
			out = append(out, fmt.Sprintf("%s (mode %#o)", p, fi.Mode().Perm()))
		}
	}
	return out
}

// errPEMCut is a PEM file that ends in the middle of a block, or has one
// that does not decode: typically a file caught while it is rewritten in
// place. pem.Decode stops at such a block, so whatever follows (an
// intermediate, a new CA) would be dropped without a word.
var errPEMCut = errors.New("a PEM block is cut short or malformed (was the file being written?)")

// pemComplete checks that every PEM block of data decodes.
func pemComplete(data []byte) error {
	rest := data
	for {
		b, r := pem.Decode(rest)
		if b == nil {
			break
		}
		rest = r
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return errPEMCut
	}
	return nil
}
