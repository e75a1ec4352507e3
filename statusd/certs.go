package statusd

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// certSweepInterval is how often a handshake re-reads every tunnel's
// certificate pointer, to notice certificate changes (new DNS names) on
// tunnels that no handshake selected. A changed certificate on a selected
// tunnel is noticed at once.
const certSweepInterval = time.Second

// certIndex picks the certificate presented by the status server. It keeps
// a snapshot indexing the tunnels by name and by the DNS names on their
// certificates, rebuilt only when the Source's set changes or a tunnel's
// certificate pointer changes, so a handshake costs a few map lookups
// whatever the fleet size.
type certIndex struct {
	src   Source
	def   string    // default tunnel name; "" = first tunnel
	epoch time.Time // monotonic base of certSnapshot.swept

	mu   sync.Mutex // serializes rebuilds and sweeps
	snap atomic.Pointer[certSnapshot]
}

// certSnapshot is an immutable index of one tunnel set, except for its two
// atomic fields.
type certSnapshot struct {
	tunnels    []Tunnel // as returned by Source
	comparable bool     // every tunnel's dynamic type is comparable
	entries    []*certEntry
	byName     map[string]*certEntry // lowercased tunnel name
	byDNS      map[string]*certEntry // lowercased DNS SAN
	byWild     map[string]*certEntry // "*.example.com" as "example.com"
	byCert     map[*tls.Certificate]*certEntry
	def        *certEntry // DefaultTunnel, or the first tunnel
	fallback   *certEntry // first tunnel that had a certificate

	swept atomic.Int64 // certIndex.epoch offset of the last pointer sweep
	dirty atomic.Bool  // a certificate pointer changed: rebuild
}

// certEntry is a tunnel and what was derived from its certificate when the
// snapshot was built.
type certEntry struct {
	tunnel Tunnel
	name   string
	cert   *tls.Certificate // nil if it had none
	leaf   *x509.Certificate
	info   *certificateJSON
}

func newCertIndex(src Source, def string) *certIndex {
	return &certIndex{src: src, def: def, epoch: time.Now()}
}

// getCertificate is tls.Config.GetCertificate: the current certificate of
// the tunnel named by SNI, else of the tunnel whose certificate covers SNI,
// else of the default tunnel. Tunnels without a certificate are skipped.
func (x *certIndex) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	sni := normalizeHost(hello.ServerName)
	snap := x.current()
	c, ok := snap.choose(sni, true)
	if !ok {
		// A DNS-name match whose certificate changed: its names may have
		// changed too, so re-index before trusting the match.
		snap = x.rebuild(snap)
		c, _ = snap.choose(sni, false)
	}
	if c == nil {
		c = snap.anyCertificate()
	}
	if c == nil {
		return nil, errors.New("no tunnel has a certificate")
	}
	return c, nil
}

// anyCertificate reports whether some tunnel has a certificate now.
func (x *certIndex) anyCertificate() bool {
	return x.current().anyCertificate() != nil
}

// describe returns the JSON description of t's current certificate, taken
// from s when the certificate is the one indexed there.
func (s *certSnapshot) describe(t Tunnel) *certificateJSON {
	c := t.Certificate()
	if c == nil || len(c.Certificate) == 0 {
		return nil
	}
	if e := s.byCert[c]; e != nil {
		return e.info
	}
	leaf, err := leafOf(c)
	if err != nil {
		return &certificateJSON{SHA256: fingerprint(c.Certificate[0])}
	}
	return describeLeaf(leaf, c.Certificate[0])
}

// current returns an up-to-date snapshot: the cached one unless the set of
// tunnels changed, a certificate change was noticed, or the periodic pointer
// sweep finds a change.
func (x *certIndex) current() *certSnapshot {
	ts := x.src.Tunnels()
	snap := x.snap.Load()
	if snap != nil && !snap.dirty.Load() && snap.sameSet(ts) {
		if x.since()-snap.swept.Load() < int64(certSweepInterval) {
			return snap
		}
		// Time for a sweep. One handshake does it; the others go on with
		// the cached snapshot meanwhile.
		if !x.mu.TryLock() {
			return snap
		}
		defer x.mu.Unlock()
		if cur := x.snap.Load(); cur != snap {
			return cur
		}
		if snap.certsUnchanged() {
			snap.swept.Store(x.since())
			return snap
		}
		return x.buildLocked(ts, snap)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if cur := x.snap.Load(); cur != snap && cur != nil && !cur.dirty.Load() && cur.sameSet(ts) {
		return cur // someone rebuilt meanwhile
	}
	return x.buildLocked(ts, snap)
}

// rebuild re-indexes after old was found stale, unless another goroutine
// already did.
func (x *certIndex) rebuild(old *certSnapshot) *certSnapshot {
	x.mu.Lock()
	defer x.mu.Unlock()
	if cur := x.snap.Load(); cur != old {
		return cur
	}
	return x.buildLocked(x.src.Tunnels(), old)
}

func (x *certIndex) since() int64 { return int64(time.Since(x.epoch)) }

// buildLocked indexes ts, reusing what old derived from unchanged
// certificates. Called with x.mu held.
func (x *certIndex) buildLocked(ts []Tunnel, old *certSnapshot) *certSnapshot {
	s := &certSnapshot{
		tunnels:    ts,
		comparable: true,
		entries:    make([]*certEntry, 0, len(ts)),
		byName:     make(map[string]*certEntry, len(ts)),
		byDNS:      make(map[string]*certEntry, len(ts)),
		byWild:     make(map[string]*certEntry),
		byCert:     make(map[*tls.Certificate]*certEntry, len(ts)),
	}
	for _, t := range ts {
		if t == nil {
			continue
		}
		if !reflect.TypeOf(t).Comparable() {
			s.comparable = false
		}
		e := &certEntry{tunnel: t, name: t.Name()}
		if c := t.Certificate(); c != nil && len(c.Certificate) > 0 {
			e.cert = c
			if prev := old.lookupCert(c); prev != nil {
				e.leaf, e.info = prev.leaf, prev.info
			} else if leaf, err := leafOf(c); err == nil {
				e.leaf, e.info = leaf, describeLeaf(leaf, c.Certificate[0])
			} else {
				e.info = &certificateJSON{SHA256: fingerprint(c.Certificate[0])}
			}
		}
		s.entries = append(s.entries, e)
		key := strings.ToLower(e.name)
		if _, dup := s.byName[key]; !dup {
			s.byName[key] = e
		}
		if e.cert != nil {
			s.byCert[e.cert] = e
			if s.fallback == nil {
				s.fallback = e
			}
		}
		if s.def == nil && x.def != "" && e.name == x.def {
			s.def = e
		}
		if e.leaf == nil {
			continue
		}
		for _, n := range e.leaf.DNSNames {
			n = normalizeHost(n)
			m := s.byDNS
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				n, m = rest, s.byWild
			}
			if _, dup := m[n]; n != "" && !dup {
				m[n] = e
			}
		}
	}
	if s.def == nil && len(s.entries) > 0 {
		s.def = s.entries[0]
	}
	s.swept.Store(x.since())
	x.snap.Store(s)
	return s
}

// lookupCert returns the entry of s indexing c, if any.
func (s *certSnapshot) lookupCert(c *tls.Certificate) *certEntry {
	if s == nil {
		return nil
	}
	return s.byCert[c]
}

// sameSet reports whether ts is the set s was built from: O(1) when the
// Source returned the very same slice, else one comparison per tunnel.
func (s *certSnapshot) sameSet(ts []Tunnel) bool {
	if len(ts) != len(s.tunnels) {
		return false
	}
	if len(ts) == 0 || &ts[0] == &s.tunnels[0] {
		return true
	}
	for i, t := range ts {
		if s.comparable {
			// Safe: interfaces with different dynamic types compare
			// unequal without panicking, and equal types are comparable.
			if t != s.tunnels[i] {
				return false
			}
		} else if t == nil || s.tunnels[i] == nil || t.Name() != s.tunnels[i].Name() {
			return false
		}
	}
	return true
}

// certsUnchanged reports whether every tunnel still has the certificate it
// had when s was built.
func (s *certSnapshot) certsUnchanged() bool {
	for _, e := range s.entries {
		if c := e.tunnel.Certificate(); c != e.cert && (c != nil || e.cert != nil) {
			return false
		}
	}
	return true
}

// choose returns the certificate for sni (nil if no candidate has one).
// With strict, ok is false when a DNS-name match's certificate has changed
// since indexing, which asks the caller to re-index. Any other change found
// marks s dirty, so that the next handshake re-indexes.
func (s *certSnapshot) choose(sni string, strict bool) (c *tls.Certificate, ok bool) {
	if sni != "" {
		if c, ok := s.try(s.byName[sni], false); c != nil {
			return c, ok
		}
		if c, ok := s.try(s.byDNS[sni], strict); c != nil || !ok {
			return c, ok
		}
		if _, parent, found := strings.Cut(sni, "."); found && parent != "" {
			if c, ok := s.try(s.byWild[parent], strict); c != nil || !ok {
				return c, ok
			}
		}
	}
	if c, _ := s.try(s.def, false); c != nil {
		return c, true
	}
	c, _ = s.try(s.fallback, false)
	return c, true
}

// try returns e's current certificate (nil if e is nil or has none). If it
// is not the indexed one, try returns ok false when strict, and otherwise
// marks s dirty.
func (s *certSnapshot) try(e *certEntry, strict bool) (c *tls.Certificate, ok bool) {
	if e == nil {
		return nil, true
	}
	c = e.tunnel.Certificate()
	if c != nil && len(c.Certificate) == 0 {
		c = nil
	}
	if c != e.cert {
		if strict {
			return nil, false
		}
		s.dirty.Store(true)
	}
	return c, true
}

// anyCertificate returns the current certificate of the first tunnel that
// has one. It costs a call per tunnel, but only runs when no tunnel had a
// certificate when s was built (or those lost theirs).
func (s *certSnapshot) anyCertificate() *tls.Certificate {
	if s.fallback != nil {
		if c := s.fallback.tunnel.Certificate(); c != nil && len(c.Certificate) > 0 {
			return c
		}
	}
	for _, e := range s.entries {
		if c := e.tunnel.Certificate(); c != nil && len(c.Certificate) > 0 {
			s.dirty.Store(true)
			return c
		}
	}
	return nil
}

// normalizeHost lowercases a host name and drops a trailing dot.
func normalizeHost(h string) string {
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// leafOf returns c's parsed leaf certificate.
func leafOf(c *tls.Certificate) (*x509.Certificate, error) {
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	return x509.ParseCertificate(c.Certificate[0])
}

// certificateJSON describes a certificate in /_status.
type certificateJSON struct {
	Subject     string   `json:"subject"`
	DNSNames    []string `json:"dns_names"`
	IPAddresses []string `json:"ip_addresses"`
	URIs        []string `json:"uris"`
	Serial      string   `json:"serial"`
	NotBefore   string   `json:"not_before"`
	NotAfter    string   `json:"not_after"`
	SHA256      string   `json:"sha256"`
}

// describeLeaf describes leaf, whose DER encoding is der.
func describeLeaf(leaf *x509.Certificate, der []byte) *certificateJSON {
	d := &certificateJSON{
		Subject:     leaf.Subject.String(),
		DNSNames:    append([]string{}, leaf.DNSNames...),
		IPAddresses: make([]string, 0, len(leaf.IPAddresses)),
		URIs:        make([]string, 0, len(leaf.URIs)),
		NotBefore:   leaf.NotBefore.UTC().Format(time.RFC3339),
		NotAfter:    leaf.NotAfter.UTC().Format(time.RFC3339),
		SHA256:      fingerprint(der),
	}
	for _, ip := range leaf.IPAddresses {
		d.IPAddresses = append(d.IPAddresses, ip.String())
	}
	for _, u := range leaf.URIs {
		d.URIs = append(d.URIs, u.String())
	}
	if leaf.SerialNumber != nil {
		d.Serial = leaf.SerialNumber.Text(16)
	}
	return d
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}
