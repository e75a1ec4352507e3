package tunnel

// ACME for server tunnels, as upstream's --auto-acme-* flags: the
// certificate for one name is obtained and renewed by an
// autocert.Manager, which answers the CA's TLS-ALPN-01 challenge on the
// tunnel's own listener.
//
// The challenge handshake (ALPN acme-tls/1 only) is served by a separate
// TLS config that asks no client certificate: the validating CA has none.
// That config's VerifyConnection always fails, after the server's last
// handshake flight: the CA (TLS 1.3) has seen the challenge certificate by
// then, and the tunnel's handshake fails, so a challenge connection is
// never forwarded to the target nor escapes client authentication.

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// errACMEChallenge ends every acme-tls/1 handshake on the tunnel's side.
var errACMEChallenge = errors.New("acme-tls/1 challenge answered; connection not forwarded")

// ACME timings: how often the certificate is looked at (autocert renews
// it by itself; the look refreshes Certificate and the expiry metric), and
// the bounds of the retry delay after a failure.
const (
	acmeCheckEvery = time.Hour
	// acmeOverdue: autocert renews 30 days before expiry, retrying on
	// failure without a word; a certificate this close to expiry means
	// renewals have failed for weeks, which the loop then says hourly.
	acmeOverdue  = 20 * 24 * time.Hour
	acmeRetryMin = 5 * time.Second
	acmeRetryMax = 30 * time.Minute
)

// acmeCert is one ACME certificate source: a manager and the certificate
// it last handed out.
type acmeCert struct {
	name string // the FQDN, without a trailing dot
	m    *autocert.Manager
	cur  atomic.Pointer[tls.Certificate]
}

// acmeKey identifies the settings of an acmeCert, so that a reload that
// keeps them keeps the manager (and its renewal timers and account).
type acmeKey struct {
	name, email, directory, cache string
	roots                         [sha256.Size]byte // cacert contents
}

// acmeManagers remembers a tunnel's current ACME source across reloads.
type acmeManagers struct {
	mu   sync.Mutex
	key  acmeKey
	last *acmeCert
}

// acmeDirectory is the directory URL t asks: the test CA, the CA, or Let's
// Encrypt production.
func acmeDirectory(t *configs.Tunnel) string {
	switch {
	case t.AutoACMETestCA != "":
		return t.AutoACMETestCA
	case t.AutoACMECA != "":
		return t.AutoACMECA
	}
	return acme.LetsEncryptURL
}

// acmeCacheDir is where the account key and certificates of t are kept:
// auto-acme-cache, or ghostunnel/acme/NAME under the user cache directory.
func acmeCacheDir(t *configs.Tunnel) (string, error) {
	if t.AutoACMECache != "" {
		return t.AutoACMECache, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("auto-acme-cache not set and no user cache directory: %w", err)
	}
	name := t.Name
	if name == "" {
		name = "default"
	}
	return filepath.Join(base, "ghostunnel", "acme", name), nil
}

// acmeRoots are the roots the ACME directory's HTTPS certificate must chain
// to: the system roots plus the cacert bundle (a private CA such as pebble
// needs its own), and a digest of the bundle.
func acmeRoots(caFile string) (*x509.CertPool, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile == "" {
		return pool, sum, nil
	}
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, sum, fmt.Errorf("reading CA bundle: %w", err)
	}
	pool.AppendCertsFromPEM(data)
	return pool, sha256.Sum256(data), nil
}

// source returns the ACME source for cfg, reusing the current one when the
// settings are the same. Nil without auto-acme-cert.
func (a *acmeManagers) source(cfg *configs.Tunnel) (*acmeCert, error) {
	if cfg.AutoACMECert == "" {
		return nil, nil
	}
	name := strings.ToLower(strings.TrimSuffix(cfg.AutoACMECert, "."))
	dir, err := acmeCacheDir(cfg)
	if err != nil {
		return nil, err
	}
	roots, sum, err := acmeRoots(cfg.CACert)
	if err != nil {
		return nil, err
	}
	key := acmeKey{name: name, email: cfg.AutoACMEEmail, directory: acmeDirectory(cfg), cache: dir, roots: sum}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.last != nil && a.key == key {
		return a.last, nil
	}
	prompt := func(string) bool { return false }
	if cfg.AutoACMEAgreeToTOS {
		prompt = autocert.AcceptTOS
	}
	s := &acmeCert{name: name, m: &autocert.Manager{
		Prompt:     prompt,
		Cache:      autocert.DirCache(dir),
		HostPolicy: autocert.HostWhitelist(name),
		Email:      cfg.AutoACMEEmail,
		Client: &acme.Client{
			DirectoryURL: key.directory,
			UserAgent:    "ghostunnel-fleet",
			HTTPClient: &http.Client{Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
				TLSHandshakeTimeout: 30 * time.Second,
			}},
		},
	}}
	a.key, a.last = key, s
	return s, nil
}

// serverTLS wraps a server tunnel's config: certificates come from the
// manager, and acme-tls/1 handshakes get the challenge config. Nil-safe:
// without ACME it returns normal.
func (s *acmeCert) serverTLS(normal *tls.Config) *tls.Config {
	if s == nil {
		return normal
	}
	normal.GetCertificate = s.getCertificate
	challenge := &tls.Config{
		// TLS 1.3 only: the CA has the certificate before VerifyConnection.
		MinVersion:             tls.VersionTLS13,
		NextProtos:             []string{acme.ALPNProto},
		GetCertificate:         s.m.GetCertificate,
		ClientAuth:             tls.NoClientCert,
		SessionTicketsDisabled: true,
		VerifyConnection:       func(tls.ConnectionState) error { return errACMEChallenge },
	}
	normal.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if slices.Contains(hello.SupportedProtos, acme.ALPNProto) {
			return challenge, nil
		}
		return nil, nil
	}
	return normal
}

// getCertificate serves the ACME certificate, obtaining it at need, and
// remembers it for Certificate.
func (s *acmeCert) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello.ServerName == "" {
		// Clients that send no SNI (or an IP address) get the name's certificate.
		h := *hello
		h.ServerName = s.name
		hello = &h
	}
	c, err := s.m.GetCertificate(hello)
	if err == nil && c != nil {
		s.remember(c)
	}
	return c, err
}

func (s *acmeCert) remember(c *tls.Certificate) {
	if c.Leaf == nil && len(c.Certificate) > 0 {
		if leaf, err := x509.ParseCertificate(c.Certificate[0]); err == nil {
			cc := *c
			cc.Leaf = leaf
			c = &cc
		}
	}
	if old := s.cur.Load(); old == nil || old.Leaf == nil || c.Leaf == nil || !old.Leaf.Equal(c.Leaf) {
		s.cur.Store(c)
	}
}

// certificate is the last certificate handed out, nil before the first.
func (s *acmeCert) certificate() *tls.Certificate { return s.cur.Load() }

// fetch obtains (or renews, or takes from the cache) the certificate as an
// ECDSA-capable client would ask for it.
func (s *acmeCert) fetch() (*tls.Certificate, error) {
	return s.getCertificate(&tls.ClientHelloInfo{
		ServerName:        s.name,
		CipherSuites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:   []tls.CurveID{tls.CurveP256},
		SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
	})
}

// acmeLoop runs, from when an ACME tunnel serves until Stop (startLoops):
// it gets the certificate as soon as the tunnel serves (rather than on the
// first client), and keeps Certificate and the expiry metric current.
func (t *Tunnel) acmeLoop() {
	defer t.bg.Done()
	var last *acmeCert
	var lastNotAfter time.Time
	var due time.Time
	retry := time.Duration(0)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		s := t.gen.Load().acme
		if s != nil && (s != last || !time.Now().Before(due)) {
			// GetCertificate takes no context; it gives up after 5 minutes
			// by itself. Run it aside so that Stop is not held up.
			done := make(chan struct{})
			var c *tls.Certificate
			var err error
			go func() { defer close(done); c, err = s.fetch() }()
			select {
			case <-done:
			case <-t.stopped:
				return
			}
			switch {
			case err != nil:
				retry = min(max(2*retry, acmeRetryMin), acmeRetryMax)
				due = time.Now().Add(retry)
				t.log.Log("level", "error", "msg", "ACME certificate not obtained", "name", s.name, "err", err, "retry_in", retry)
			default:
				retry, due = 0, time.Now().Add(acmeCheckEvery)
				if c.Leaf != nil && (s != last || !c.Leaf.NotAfter.Equal(lastNotAfter)) {
					lastNotAfter = c.Leaf.NotAfter
					t.m.certNotAfter.Set(float64(lastNotAfter.Unix()))
					t.log.Log("msg", "ACME certificate ready", "name", s.name, "not_after", lastNotAfter.Format(time.RFC3339))
				}
				if c.Leaf != nil {
					switch left := time.Until(c.Leaf.NotAfter); {
					case left <= 0:
						t.log.Log("level", "error", "msg", "ACME certificate expired and not renewed: check the CA's reachability and the cache", "name", s.name, "not_after", c.Leaf.NotAfter.Format(time.RFC3339))
					case left < acmeOverdue:
						t.log.Log("level", "warn", "msg", "ACME certificate not renewed yet", "name", s.name, "not_after", c.Leaf.NotAfter.Format(time.RFC3339))
					}
				}
			}
			last = s
		}
		select {
		case <-tick.C:
		case <-t.stopped:
			return
		}
	}
}

// notAfter is the expiry of the certificate g presents, zero without one.
func (g *generation) notAfter() time.Time {
	if c := g.presented(); c != nil && c.Leaf != nil {
		return c.Leaf.NotAfter
	}
	return time.Time{}
}

// presented is the certificate g presents now: the ACME one (nil before
// it is obtained), or the one of its credentials.
func (g *generation) presented() *tls.Certificate {
	if g.acme != nil {
		return g.acme.certificate()
	}
	return g.creds.current()
}
