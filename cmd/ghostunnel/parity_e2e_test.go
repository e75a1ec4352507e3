package main

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// TestPolicyFromBinary: upstream's --allow-policy/--allow-query command
// line admits what the Rego policy allows, and SIGHUP reloads the policy.
func TestPolicyFromBinary(t *testing.T) {
	p := newE2EPKI(t)
	backend := echoServer(t)
	addr := freeAddr(t)
	dir := filepath.Join(p.dir, "policy")
	os.MkdirAll(dir, 0o755)
	write := func(cn string) {
		rego := "package ghostunnel\n\ndefault allow := false\n\nallow if input.certificate.Subject.CommonName == \"" + cn + "\"\n"
		os.WriteFile(filepath.Join(dir, "policy.rego.tmp"), []byte(rego), 0o644)
		os.Rename(filepath.Join(dir, "policy.rego.tmp"), filepath.Join(dir, "policy.rego"))
	}
	write("client")
	srv := startProc(t, nil, "server", "--listen", addr, "--target", backend,
		"--keystore", p.server.Combined, "--cacert", p.ca.CAFile,
		"--allow-policy", dir, "--allow-query", "data.ghostunnel.allow")
	waitListening(t, addr)
	other := p.ca.Issue("other", testpki.Options{CN: "other", Client: true})
	try := func(l *testpki.Leaf) error {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{l.TLS()}})
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			return err
		}
		_, err = c.Read(make([]byte, 1))
		return err
	}
	if err := try(p.client); err != nil {
		t.Fatalf("client the policy allows: %v", err)
	}
	if err := try(other); err == nil {
		t.Fatal("client the policy refuses got through")
	}
	write("other")
	srv.signal(syscall.SIGHUP)
	srv.waitLog("reloaded credentials", 10*time.Second)
	if err := try(other); err != nil {
		t.Fatalf("after SIGHUP the newly allowed client was refused: %v", err)
	}
	if err := try(p.client); err == nil {
		t.Fatal("after SIGHUP the no longer allowed client got through")
	}
}
