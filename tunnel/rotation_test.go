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
