package tunnel

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testnet"
)

func TestCredentialSource(t *testing.T) {
	for want, cfg := range map[string]configs.Tunnel{
		SourceFiles:    {Cert: "c", Key: "k"},
		SourceWorkload: {UseWorkloadAPI: true},
		SourceACME:     {AutoACMECert: "x.example"},
		SourcePKCS11:   {Cert: "c", PKCS11Module: "m.so"},
		SourceNone:     {DisableAuthentication: true},
	} {
		if got := credentialSource(&cfg); got != want {
			t.Errorf("%+v: source %q, want %q", cfg, got, want)
		}
	}
}

func TestSnapshotNextRotation(t *testing.T) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	cfg := p.serverTunnel(backend.addr())
	plain := start(t, cfg)
	if s := plain.Snapshot(); s.CredentialSource != SourceFiles || !s.NextRotation.IsZero() {
		t.Fatalf("without timed-reload: %+v", s)
	}
	cfg.TimedReload = configs.Duration(time.Hour)
	timed := start(t, cfg)
	s := timed.Snapshot()
	if d := time.Until(s.NextRotation); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("next rotation in %v, want about an hour", d)
	}
}

// TestTimedReloadFollowsSettings: a tunnel started without timed-reload
// runs no reload loop; a settings change that sets it starts one, and one
// that clears it stops the reloads.
func TestTimedReloadFollowsSettings(t *testing.T) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	cfg := p.serverTunnel(backend.addr())
	tun := start(t, cfg)
	reloads := func() float64 { return tun.m.reloads.Value() }
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (reloads %v)", what, reloads())
			}
		}
	}
	tun.bgMu.Lock()
	loops := tun.reloading || tun.acme
	tun.bgMu.Unlock()
	if loops {
		t.Fatal("a tunnel without timed-reload or ACME runs a background loop")
	}

	cfg.TimedReload = configs.Duration(20 * time.Millisecond)
	if err := tun.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	applied := reloads()
	waitFor("two timed reloads", func() bool { return reloads() >= applied+2 })

	cfg.TimedReload = 0
	if err := tun.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	// A timed reload already under way may still land; then none.
	time.Sleep(50 * time.Millisecond)
	stopped := reloads()
	time.Sleep(200 * time.Millisecond)
	if got := reloads(); got != stopped {
		t.Fatalf("timed reloads went on after timed-reload was cleared: %v -> %v", stopped, got)
	}
}

// TestReloadDoesNotRevertNewerSettings: a credential reload (timed-reload,
// SIGHUP) still reading its files when new settings are applied (a fleet
// reload) does not put the settings it started from back over them.
func TestReloadDoesNotRevertNewerSettings(t *testing.T) {
	p := newPKI(t)
	e := newEcho(t, "tcp", "127.0.0.1:0")
	cfg := p.serverTunnel(e.addr()) // allow-all
	tun := start(t, cfg)
	ca, err := os.ReadFile(p.ca.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	caCopy := filepath.Join(p.dir, "ca-copy.pem")
	if err := os.WriteFile(caCopy, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	// The CA bundle becomes a FIFO: the reload blocks reading it.
	os.Remove(p.ca.CAFile)
	if err := syscall.Mkfifo(p.ca.CAFile, 0o600); err != nil {
		t.Fatal(err)
	}
	reloaded := make(chan error, 1)
	go func() { reloaded <- tun.Reload() }()
	time.Sleep(100 * time.Millisecond)

	tighter := cfg
	tighter.CACert, tighter.AllowAll, tighter.AllowCN = caCopy, false, []string{"nobody"}
	if err := tun.Apply(tighter); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(p.ca.CAFile, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(ca)
	w.Close()
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	if got := tun.Config(); got.AllowAll || got.CACert != caCopy {
		t.Fatalf("the reload put the old settings back: allow-all %v, cacert %s", got.AllowAll, got.CACert)
	}
	if err := echoOK(tun.Addr().String(), p.clientTLS()); err == nil {
		t.Fatal("a client the applied rules refuse got through")
	}
}

// TestCertNotAfterFollowsReload: cert_not_after is the certificate the
// tunnel presents after a reload, and 0 once it presents none.
func TestCertNotAfterFollowsReload(t *testing.T) {
	p := newPKI(t)
	cfg := p.clientTunnel("localhost:1")
	tun := start(t, cfg)
	if got := tun.m.certNotAfter.Value(); got != float64(p.client.Cert.NotAfter.Unix()) {
		t.Fatalf("cert_not_after %v, want the client certificate's %v", got, p.client.Cert.NotAfter.Unix())
	}
	none := cfg
	none.Keystore, none.Cert, none.Key, none.DisableAuthentication = "", "", "", true
	if err := tun.Apply(none); err != nil {
		t.Fatal(err)
	}
	if got := tun.m.certNotAfter.Value(); got != 0 {
		t.Fatalf("cert_not_after %v with no certificate, want 0", got)
	}
}

// TestHalfWrittenPEMRefused: a certificate chain or CA bundle caught half
// written (its last block cut short) is refused, and a reload keeps the
// credentials it had, rather than silently dropping the cut block (an
// intermediate, a new CA).
func TestHalfWrittenPEMRefused(t *testing.T) {
	p := newPKI(t)
	tun := start(t, p.serverTunnel("127.0.0.1:1"))
	cut := func(path string, extra []byte) {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(data, extra...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	half := []byte("-----BEGIN CERTIFICATE-----\nMIIBkTCCATegAwIBAgIUQ0\n")
	for _, path := range []string{p.ca.CAFile, p.server.CertFile} {
		orig, _ := os.ReadFile(path)
		cut(path, half)
		if err := tun.Reload(); err == nil || !strings.Contains(err.Error(), "cut short") {
			t.Errorf("%s half written: reload error %v", filepath.Base(path), err)
		}
		os.WriteFile(path, orig, 0o600)
		if err := tun.Reload(); err != nil {
			t.Fatalf("%s restored: %v", filepath.Base(path), err)
		}
	}
}

// TestLooseKeyWarnedOnReload: a private key file that group or others can
// read is warned about at startup and when a reload brings one, once while
// it stays so.
func TestLooseKeyWarnedOnReload(t *testing.T) {
	p := newPKI(t)
	var logs testnet.Buffer
	cfg := p.serverTunnel("127.0.0.1:1")
	tun := startWith(t, cfg, Deps{Logger: log.NewLogfmtLogger(&logs)})
	const warning = "private key file is readable by group or others"
	if strings.Contains(logs.String(), warning) {
		t.Fatalf("warned about a 0600 key:\n%s", logs.String())
	}
	if err := os.Chmod(cfg.Key, 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := tun.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), warning); n != 1 {
		t.Fatalf("%d warnings after two reloads of a 0644 key, want 1:\n%s", n, logs.String())
	}
}
