package tunnel

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"runtime"
	"sync"
	"weak"
)

// Parsed credentials are shared process-wide between the tunnels and the
// generations whose files hold the same bytes: a fleet of tunnels naming
// one certificate, key and CA bundle parses them once instead of once per
// tunnel and per reload (docs/PERFORMANCE.md, "Fleet scaling").
//
// The files are still read on every load; only parsing is shared, keyed on
// a digest of what was read, so a changed file is parsed afresh and can
// never be answered from the cache. Entries hold their values weakly: a
// value lives as long as some generation uses it, and its entry is removed
// once it is collected. Failures are not cached.
//
// What the caches return is shared and must never be mutated: no AddCert
// or AppendCertsFromPEM on a pool, no field writes on a certificate. Code
// that needs a variant builds its own (acme.go's roots, for one).
//
// PKCS#11 certificates (bound to a token session), SPIFFE and ACME ones
// (not read from files) do not go through here.
var (
	certCache credCache[tls.Certificate] // cert and key files, keystores
	poolCache credCache[x509.CertPool]   // CA bundles, the system pool
)

// credKey is a SHA-256 digest of a credential's kind and input bytes.
type credKey [sha256.Size]byte

// keyOf digests kind and parts, each length-prefixed so that no two
// different inputs share a key. A keystore password goes in as a part: the
// key holds only its digest, never the password.
func keyOf(kind string, parts ...[]byte) credKey {
	h := sha256.New()
	var n [8]byte
	for _, p := range append([][]byte{[]byte(kind)}, parts...) {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	var k credKey
	h.Sum(k[:0])
	return k
}

// credCache maps digests to weakly held parsed values.
type credCache[T any] struct {
	mu sync.Mutex
	m  map[credKey]weak.Pointer[T]
}

// credEntry identifies one insertion, for its cleanup.
type credEntry[T any] struct {
	key credKey
	wp  weak.Pointer[T]
}

// load returns the live value for key, or parses, remembers and returns a
// new one. Parsing runs outside the lock, so loads of different files do
// not wait for each other; two concurrent first loads of the same bytes
// may both parse, and both get the value inserted first.
func (c *credCache[T]) load(key credKey, parse func() (*T, error)) (*T, error) {
	c.mu.Lock()
	v := c.m[key].Value()
	c.mu.Unlock()
	if v != nil {
		return v, nil
	}
	v, err := parse()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[key].Value(); old != nil {
		return old, nil
	}
	if c.m == nil {
		c.m = make(map[credKey]weak.Pointer[T])
	}
	wp := weak.Make(v)
	c.m[key] = wp
	// The entry goes when the value does, so the map holds only live
	// values and those whose cleanup is pending. A dead entry that a load
	// replaced before its cleanup ran is left alone (forget compares).
	runtime.AddCleanup(v, c.forget, credEntry[T]{key, wp})
	return v, nil
}

// forget removes e's entry unless another value has replaced it.
func (c *credCache[T]) forget(e credEntry[T]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[e.key] == e.wp {
		delete(c.m, e.key)
	}
}
