package tunnel

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// Tunnels naming the same files share one parsed certificate and CA pool,
// and a reload of unchanged files parses nothing.
func TestCredCacheSharedBetweenTunnels(t *testing.T) {
	p := newPKI(t)
	cfg := p.serverTunnel("127.0.0.1:1")
	var tuns []*Tunnel
	for _, name := range []string{"a", "b"} {
		cfg.Name = name
		tun, err := New(cfg, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tun.Close)
		tuns = append(tuns, tun)
	}
	a, b := tuns[0], tuns[1]
	if a.Certificate() != b.Certificate() {
		t.Error("two tunnels with the same cert and key files hold two certificates")
	}
	if a.gen.Load().creds.pool != b.gen.Load().creds.pool {
		t.Error("two tunnels with the same CA file hold two pools")
	}
	if a.Certificate().Leaf == nil {
		t.Error("shared certificate has no Leaf")
	}
	before := a.Certificate()
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if a.Certificate() != before {
		t.Error("a reload of unchanged files parsed them again")
	}
}

// A rewritten file is parsed afresh on the next load; the tunnel still on
// the old generation keeps the old certificate.
func TestCredCacheChangedFileReparsed(t *testing.T) {
	p := newPKI(t)
	cfg := p.serverTunnel("127.0.0.1:1")
	c1, err := loadCredentials(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	next := p.ca.Issue("server", testpki.Localhost()) // rewrites server.crt and server.key
	ca2 := testpki.NewCA(p.dir, "ca")                 // rewrites ca.pem
	c2, err := loadCredentials(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c2.cert == c1.cert {
		t.Fatal("rewritten certificate file answered from the cache")
	}
	if got, want := c2.cert.Leaf.SerialNumber, next.Cert.SerialNumber; got.Cmp(want) != 0 {
		t.Errorf("serial %v after rewrite, want %v", got, want)
	}
	if c1.cert.Leaf.SerialNumber.Cmp(p.server.Cert.SerialNumber) != 0 {
		t.Error("the old generation's certificate changed")
	}
	if c2.pool == c1.pool {
		t.Fatal("rewritten CA file answered from the cache")
	}
	anyUse := []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	fresh := ca2.Issue("fresh", testpki.Localhost()).Cert
	if _, err := fresh.Verify(x509.VerifyOptions{Roots: c2.pool, KeyUsages: anyUse}); err != nil {
		t.Errorf("new pool does not trust the new CA: %v", err)
	}
	if _, err := next.Cert.Verify(x509.VerifyOptions{Roots: c2.pool, KeyUsages: anyUse}); err == nil {
		t.Error("new pool still trusts the old CA")
	}
	if _, err := fresh.Verify(x509.VerifyOptions{Roots: c1.pool, KeyUsages: anyUse}); err == nil {
		t.Error("the old generation's pool changed")
	}

	// Only the key file changing is a change too.
	other := p.ca.Issue("other", testpki.Localhost())
	mustCopy(t, other.KeyFile, next.KeyFile)
	if _, err := loadCredentials(&cfg); err == nil {
		t.Error("certificate loaded with a key file that no longer matches it")
	}
}

func mustCopy(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// The password is part of the key: a wrong one still fails, and a keystore
// that ignores it (PEM) gets one entry per password.
func TestCredCacheKeystorePassword(t *testing.T) {
	p := newPKI(t)
	path := filepath.Join(p.dir, "server.p12")
	p.server.WritePKCS12(path, "right")
	k1, err := loadKeystore(path, "right")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadKeystore(path, "wrong"); err == nil {
		t.Fatal("wrong password answered from the cache")
	}
	if k2, err := loadKeystore(path, "right"); err != nil || k2 != k1 {
		t.Errorf("same keystore and password: %p, %v; want %p", k2, err, k1)
	}

	a, err := loadKeystore(p.server.Combined, "one")
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadKeystore(p.server.Combined, "two")
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Error("a load with another password hit the entry of the first")
	}
	if a.Leaf == nil {
		t.Error("PEM keystore certificate has no Leaf")
	}
}

// The system pool (no cacert) is shared and still verifies nothing ours.
func TestCredCacheSystemPool(t *testing.T) {
	p := newPKI(t)
	cfg := p.serverTunnel("127.0.0.1:1")
	cfg.CACert = ""
	c1, err := loadCredentials(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := loadCredentials(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c1.pool == nil || c1.pool != c2.pool {
		t.Errorf("system pools %p and %p, want one shared", c1.pool, c2.pool)
	}
	if _, err := p.server.Cert.Verify(x509.VerifyOptions{Roots: c1.pool}); err == nil {
		t.Error("the system pool trusts the test CA")
	}
}

// Entries die with the last generation using them.
func TestCredCacheCollectable(t *testing.T) {
	p := newPKI(t)
	path := filepath.Join(p.dir, "server.p12")
	p.server.WritePKCS12(path, "pw")
	certKey, poolKey, storeKey := loadAndDrop(t, p, path)

	for i := 0; ; i++ {
		runtime.GC()
		if !cached(&certCache, certKey) && !cached(&poolCache, poolKey) && !cached(&certCache, storeKey) {
			return
		}
		if i == 50 {
			t.Fatal("entries still in the cache after 50 collections")
		}
		time.Sleep(10 * time.Millisecond) // cleanups run on their own goroutine
	}
}

// loadAndDrop loads everything once, checks it is cached, and keeps no
// reference to it.
func loadAndDrop(t *testing.T, p *pki, keystore string) (certKey, poolKey, storeKey credKey) {
	cfg := p.serverTunnel("127.0.0.1:1")
	creds, err := loadCredentials(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	store, err := loadKeystore(keystore, "pw")
	if err != nil {
		t.Fatal(err)
	}
	// Held until checked: a collection in between could run the cleanups.
	defer runtime.KeepAlive(creds)
	defer runtime.KeepAlive(store)
	certKey = keyOf("cert and key", readFile(t, p.server.CertFile), readFile(t, p.server.KeyFile))
	poolKey = keyOf("CA bundle", readFile(t, p.ca.CAFile))
	storeKey = keyOf("keystore", readFile(t, keystore), []byte("pw"))
	// Present until collected: the loads did go through the cache.
	for _, k := range []credKey{certKey, storeKey} {
		if !cached(&certCache, k) {
			t.Fatal("certificate not cached")
		}
	}
	if !cached(&poolCache, poolKey) {
		t.Fatal("pool not cached")
	}
	return
}

// cached reports whether c has an entry for k (live or awaiting cleanup).
func cached[T any](c *credCache[T], k credKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[k]
	return ok
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Concurrent loads of the same files, racing a first load, all get the one
// value inserted; loads of other files go on meanwhile.
func TestCredCacheConcurrent(t *testing.T) {
	p := newPKI(t)
	cfgs := []configs.Tunnel{p.serverTunnel("127.0.0.1:1"), p.clientTunnel("127.0.0.1:1")}
	const goroutines, loads = 8, 20
	got := make([][]*credentials, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range loads {
				cfg := cfgs[(g+i)%len(cfgs)]
				c, err := loadCredentials(&cfg)
				if err != nil {
					t.Error(err)
					return
				}
				got[g] = append(got[g], c)
			}
		}()
	}
	wg.Wait()
	first := map[*tls.Certificate]bool{}
	pools := map[*x509.CertPool]bool{}
	for _, cs := range got {
		for _, c := range cs {
			first[c.cert] = true
			pools[c.pool] = true
		}
	}
	if len(first) != 2 || len(pools) != 1 {
		t.Errorf("%d certificates and %d pools for 2 cert files and 1 CA file", len(first), len(pools))
	}
}

// BenchmarkLoadCredentials is a tunnel's credential load when another
// tunnel already holds the same files: reads and hashes, no parsing.
func BenchmarkLoadCredentials(b *testing.B) {
	p := newPKI(b)
	cfg := p.serverTunnel("127.0.0.1:1")
	held, err := loadCredentials(&cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := loadCredentials(&cfg); err != nil {
			b.Fatal(err)
		}
	}
	runtime.KeepAlive(held)
}
