package tunnel

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// cipherSuites are the TLS 1.2 suites we offer: forward secret AEADs only.
// TLS 1.3 suites are not configurable in crypto/tls and are all modern.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

func maxVersion(s string) uint16 {
	switch strings.TrimPrefix(strings.ToUpper(s), "TLS") {
	case "1.2":
		return tls.VersionTLS12
	default:
		return tls.VersionTLS13
	}
}

func baseTLS(t *configs.Tunnel) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   maxVersion(t.MaxTLSVersion),
		CipherSuites: cipherSuites,
		// A tunnel streams: full-size records from the first byte cost
		// fewer syscalls and less framing than slow-start record sizing.
		DynamicRecordSizingDisabled: true,
	}
}

// serverTLS builds the listener's TLS config for one settings generation.
// Access rules run in VerifyConnection, which crypto/tls calls on resumed
// sessions too; a resumed session's chain is checked again against the
// generation's CA pool (through a cache of the chains verified with that
// pool: resume.go), so neither a tightened allow-list nor a rotated CA can
// be bypassed with an old session ticket.
func serverTLS(t *configs.Tunnel, c *credentials, a *acl, ticketKeys [][32]byte) *tls.Config {
	if c.spiffe != nil {
		return spiffeServerTLS(t, c.spiffe, a, ticketKeys)
	}
	cfg := baseTLS(t)
	cert := c.cert
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }
	if len(ticketKeys) > 0 {
		cfg.SetSessionTicketKeys(ticketKeys)
	}
	switch {
	case t.DisableAuthentication:
		cfg.ClientAuth = tls.NoClientCert
		return cfg
	case a.pinned():
		// The pin replaces chain verification.
		cfg.ClientAuth = tls.RequireAnyClientCert
	default:
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = c.pool
	}
	pool := c.pool
	verified := new(chainCache)
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("client presented no certificate")
		}
		leaf := cs.PeerCertificates[0]
		if !a.pinned() {
			key := chainKey(cs.PeerCertificates)
			switch {
			case !cs.DidResume:
				// crypto/tls has just verified the chain against pool.
				if len(cs.VerifiedChains) > 0 {
					verified.add(key, cs.VerifiedChains[0])
				}
			case verified.verified(key, time.Now()):
			default:
				chain, err := verifyChain(leaf, cs.PeerCertificates[1:], pool, x509.ExtKeyUsageClientAuth, "")
				if err != nil {
					return fmt.Errorf("resumed session: %w", err)
				}
				verified.add(key, chain)
			}
		}
		if err := a.check(leaf); err != nil {
			return fmt.Errorf("client %q: %w", peerName(leaf), err)
		}
		return nil
	}
	return cfg
}

// verifyChain verifies leaf against roots and returns the first chain.
func verifyChain(leaf *x509.Certificate, rest []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage, host string) ([]*x509.Certificate, error) {
	inter := x509.NewCertPool()
	for _, c := range rest {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, DNSName: host,
		CurrentTime: time.Now(), KeyUsages: []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return nil, err
	}
	return chains[0], nil
}

// clientTLS builds the TLS configs a client tunnel dials its target with:
// the full-handshake one and its resumption variant (resume.go). Each
// generation gets its own session cache, so a reload of credentials or
// verify rules drops every cached session.
func clientTLS(t *configs.Tunnel, c *credentials, a *acl) *clientConfigs {
	return newClientConfigs(fullClientTLS(t, c, a))
}

// fullClientTLS is the config for full handshakes.
func fullClientTLS(t *configs.Tunnel, c *credentials, a *acl) *tls.Config {
	if c.spiffe != nil {
		return spiffeClientTLS(t, c.spiffe, a)
	}
	cfg := baseTLS(t)
	cfg.ServerName = serverName(t)
	cfg.RootCAs = c.pool
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	if c.cert != nil && !t.DisableAuthentication {
		cert := c.cert
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	if a.pinned() {
		// The pin replaces chain and hostname verification.
		cfg.InsecureSkipVerify = true
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("server presented no certificate")
		}
		leaf := cs.PeerCertificates[0]
		if err := a.check(leaf); err != nil {
			return fmt.Errorf("server %q: %w", peerName(leaf), err)
		}
		return nil
	}
	return cfg
}

// serverName is the name a client tunnel verifies and sends as SNI.
func serverName(t *configs.Tunnel) string {
	if t.OverrideServerName != "" {
		return t.OverrideServerName
	}
	host, _, err := net.SplitHostPort(t.Target)
	if err != nil {
		return t.Target
	}
	return host
}
