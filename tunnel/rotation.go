package tunnel

import (
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// Credential sources, as /_status names them.
const (
	SourceFiles    = "files"         // cert and key, or a keystore, read from disk
	SourcePKCS11   = "pkcs11"        // certificate from disk, key in a token
	SourceWorkload = "spiffe"        // X.509 SVIDs from the SPIFFE Workload API
	SourceACME     = "acme"          // certificates from an ACME CA
	SourceNone     = "none"          // a client tunnel that presents no certificate
	acmeRenewal    = 720 * time.Hour // autocert's default RenewBefore
)

// credentialSource names where cfg's certificate comes from.
func credentialSource(cfg *configs.Tunnel) string {
	switch {
	case cfg.UseWorkloadAPI:
		return SourceWorkload
	case cfg.AutoACMECert != "":
		return SourceACME
	case cfg.PKCS11Module != "":
		return SourcePKCS11
	case cfg.Keystore != "" || cfg.Cert != "":
		return SourceFiles
	}
	return SourceNone
}

// nextRotation estimates when the tunnel's certificate next changes without
// a signal: a SPIFFE agent rotates an SVID at about half its life, autocert
// renews 30 days before expiry, files are re-read every timed-reload. Zero
// when nothing is scheduled (files without timed-reload change on SIGHUP).
func (t *Tunnel) nextRotation(g *generation, lastReload time.Time) time.Time {
	cert := g.presented()
	switch credentialSource(&g.cfg) {
	case SourceWorkload:
		if cert != nil && cert.Leaf != nil {
			l := cert.Leaf
			return l.NotBefore.Add(l.NotAfter.Sub(l.NotBefore) / 2)
		}
	case SourceACME:
		if cert != nil && cert.Leaf != nil {
			return cert.Leaf.NotAfter.Add(-acmeRenewal)
		}
	default:
		if d := g.cfg.TimedReload.D(); d > 0 {
			from := lastReload
			if from.IsZero() {
				from = t.started
			}
			next := from.Add(d)
			if late := time.Since(next); late > 0 {
				next = next.Add((late/d + 1) * d)
			}
			return next
		}
	}
	return time.Time{}
}
