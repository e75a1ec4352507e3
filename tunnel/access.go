package tunnel

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// acl is a compiled allow-list (server) or verify-list (client). It is plain
// data built once per settings generation and only read afterwards.
type acl struct {
	all  bool
	cns  []string
	ous  []string
	dns  []string
	uris []configs.URIPattern
	ips  []net.IP
	pins []configs.SPKIPin
	// policy is the OPA policy (policy.go), nil without one. A server's
	// stands alone; a client's ORs with the name rules.
	policy *policy
}

// errDenied is the error a peer outside the access rules gets.
var errDenied = errors.New("access denied by access control rules")

func compileACL(all bool, cns, ous, dnss, uris, ips, pins []string) (*acl, error) {
	a := &acl{all: all, cns: cns, ous: ous, dns: dnss}
	for _, u := range uris {
		p, err := configs.CompileURIPattern(u)
		if err != nil {
			return nil, fmt.Errorf("uri pattern %q: %w", u, err)
		}
		a.uris = append(a.uris, p)
	}
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("invalid IP address %q", s)
		}
		a.ips = append(a.ips, ip)
	}
	for _, s := range pins {
		p, err := configs.ParseSPKIPin(s)
		if err != nil {
			return nil, fmt.Errorf("spki pin %q: %w", s, err)
		}
		a.pins = append(a.pins, p)
	}
	return a, nil
}

func serverACL(t *configs.Tunnel) (*acl, error) {
	a, err := compileACL(t.AllowAll, t.AllowCN, t.AllowOU, t.AllowDNS, t.AllowURI, t.AllowIP, t.AllowSPKIPin)
	if err != nil {
		return nil, err
	}
	if a.policy, err = loadPolicy(t.AllowPolicy, t.AllowQuery, t.ConnectTimeout.D()); err != nil {
		return nil, err
	}
	return a, nil
}

func clientACL(t *configs.Tunnel) (*acl, error) {
	// A client with no verify rules accepts any server that passes chain and
	// hostname verification, as upstream does.
	a, err := compileACL(false, t.VerifyCN, t.VerifyOU, t.VerifyDNS, t.VerifyURI, t.VerifyIP, t.VerifySPKIPin)
	if err != nil {
		return nil, err
	}
	if a.policy, err = loadPolicy(t.VerifyPolicy, t.VerifyQuery, t.ConnectTimeout.D()); err != nil {
		return nil, err
	}
	a.all = !a.hasNameRules() && len(a.pins) == 0 && a.policy == nil
	return a, nil
}

func (a *acl) hasNameRules() bool {
	return len(a.cns)+len(a.ous)+len(a.dns)+len(a.uris)+len(a.ips) > 0
}

// pinned reports whether SPKI pins replace chain verification.
func (a *acl) pinned() bool { return len(a.pins) > 0 }

// check decides whether the peer leaf is admitted. Field rules OR together,
// then the OPA policy, if any, decides.
func (a *acl) check(leaf *x509.Certificate) error {
	if leaf == nil {
		return errors.New("peer presented no certificate")
	}
	if a.all {
		return nil
	}
	if a.pinned() {
		for _, p := range a.pins {
			if p.Matches(leaf) {
				return nil
			}
		}
		return errDenied
	}
	if slices.Contains(a.cns, leaf.Subject.CommonName) {
		return nil
	}
	for _, ou := range leaf.Subject.OrganizationalUnit {
		if slices.Contains(a.ous, ou) {
			return nil
		}
	}
	for _, d := range leaf.DNSNames {
		if slices.Contains(a.dns, d) {
			return nil
		}
	}
	for _, ip := range leaf.IPAddresses {
		for _, want := range a.ips {
			if want.Equal(ip) {
				return nil
			}
		}
	}
	for _, u := range leaf.URIs {
		s := u.String()
		for _, p := range a.uris {
			if p.Match(s) {
				return nil
			}
		}
	}
	if a.policy != nil {
		return a.policy.allows(leaf)
	}
	return errDenied
}

// peerName is the identity logged for a peer: its CN, else its first URI or
// DNS SAN.
func peerName(leaf *x509.Certificate) string {
	if leaf == nil {
		return ""
	}
	switch {
	case leaf.Subject.CommonName != "":
		return leaf.Subject.CommonName
	case len(leaf.URIs) > 0:
		return leaf.URIs[0].String()
	case len(leaf.DNSNames) > 0:
		return leaf.DNSNames[0]
	}
	return ""
}
