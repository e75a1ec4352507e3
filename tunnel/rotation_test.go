package tunnel

import (
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
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
