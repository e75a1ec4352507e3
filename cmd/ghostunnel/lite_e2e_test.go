package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLiteBuild: `make build-lite` links neither OPA nor go-spiffe (nor the
// gRPC they bring), serves a plain tunnel pair, and refuses the settings it
// cannot honour with an error that says why and where.
func TestLiteBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "ghostunnel-lite")
	if out, err := exec.Command("go", "build", "-tags", liteTags, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags %s: %v\n%s", liteTags, err, out)
	}
	mods, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, mods)
	}
	for _, dep := range []string{"github.com/open-policy-agent/opa", "github.com/spiffe/go-spiffe", "google.golang.org/grpc"} {
		if strings.Contains(string(mods), dep) {
			t.Errorf("the lite binary links %s", dep)
		}
	}

	p := newE2EPKI(t)
	backend := echoServer(t)
	srvAddr, cliAddr := freeAddr(t), freeAddr(t)
	startArgv(t, nil, bin, "server", "--listen", srvAddr, "--target", backend,
		"--cert", p.server.CertFile, "--key", p.server.KeyFile, "--cacert", p.ca.CAFile, "--allow-cn", "client")
	startArgv(t, nil, bin, "client", "--listen", cliAddr, "--target", "localhost:"+strings.Split(srvAddr, ":")[1],
		"--keystore", p.client.Combined, "--cacert", p.ca.CAFile)
	waitListening(t, srvAddr)
	waitListening(t, cliAddr)
	echoThrough(t, cliAddr, "hello through the lite pair")

	policy := startArgv(t, nil, bin, "server", "--listen", freeAddr(t), "--target", backend,
		"--cert", p.server.CertFile, "--key", p.server.KeyFile, "--cacert", p.ca.CAFile,
		"--allow-policy", p.dir, "--allow-query", "data.ghostunnel.allow")
	if code := policy.wait(10 * time.Second); code == 0 {
		t.Fatal("--allow-policy accepted by a build without OPA")
	}
	if out := policy.out.String(); !strings.Contains(out, "--allow-policy") || !strings.Contains(out, "no OPA policy support") {
		t.Errorf("--allow-policy without OPA: want the flag and the reason, got:\n%s", out)
	}

	fleet := filepath.Join(t.TempDir(), "fleet.yaml")
	os.WriteFile(fleet, []byte("tunnels:\n  - name: svid\n    mode: server\n    listen: "+freeAddr(t)+
		"\n    target: "+backend+"\n    use-workload-api: true\n    allow-all: true\n"), 0o600)
	spiffe := startArgv(t, nil, bin, "-config", fleet)
	if code := spiffe.wait(10 * time.Second); code == 0 {
		t.Fatal("use-workload-api accepted by a build without SPIFFE")
	}
	if out := spiffe.out.String(); !strings.Contains(out, "fleet.yaml:6:") || !strings.Contains(out, "no SPIFFE Workload API support") {
		t.Errorf("use-workload-api without SPIFFE: want file:line and the reason, got:\n%s", out)
	}
}
