package supervisor

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// Landlock applies to the whole process and cannot be undone, so the
// sandbox is tested in a child: TestLandlockSandbox re-executes this test
// binary to run TestLandlockHelper, which sandboxes itself.
const landlockHelperEnv = "GHOSTUNNEL_LANDLOCK_HELPER"

func TestLandlockPaths(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "sockets")
	certs := filepath.Join(dir, "certs")
	cache := filepath.Join(dir, "acme")
	cfg := &configs.Config{
		Path:   filepath.Join(dir, "fleet", "fleet.yaml"),
		Status: "unix:" + filepath.Join(sock, "status.sock"),
		Tunnels: []configs.Tunnel{
			{Name: "a", Mode: "server", Listen: "unix:" + filepath.Join(sock, "a.sock"), Target: "127.0.0.1:1",
				Cert: filepath.Join(certs, "a.crt"), Key: filepath.Join(certs, "a.key"), CACert: filepath.Join(dir, "ca", "ca.crt")},
			{Name: "b", Mode: "server", Listen: "127.0.0.1:2", Target: "unix:@abstract",
				AutoACMECert: "example.com", AutoACMECache: cache},
		},
	}
	p := landlockPaths(cfg)
	for _, d := range []string{filepath.Join(dir, "fleet"), certs, filepath.Join(dir, "ca"), "/etc/ssl", "/proc/self"} {
		if !slices.Contains(p.roDirs, d) {
			t.Errorf("read-only dirs %v lack %s", p.roDirs, d)
		}
	}
	for _, d := range []string{sock, cache} {
		if !slices.Contains(p.rwDirs, d) {
			t.Errorf("read-write dirs %v lack %s", p.rwDirs, d)
		}
	}
	if slices.Contains(p.roDirs, sock) {
		t.Errorf("socket dir %s is read-only too", sock)
	}
	if _, err := os.Stat(cache); err != nil {
		t.Errorf("ACME cache dir not created: %v", err)
	}
	if !slices.Contains(p.roFiles, "/etc/resolv.conf") {
		t.Errorf("read-only files %v lack /etc/resolv.conf", p.roFiles)
	}
}

func TestLandlockDisabled(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  configs.Config
		want string
	}{
		{"flag", configs.Config{DisableLandlock: true}, "landlock disabled by disable-landlock"},
		{"pkcs11", configs.Config{Tunnels: []configs.Tunnel{{Name: "hsm", PKCS11Module: "/usr/lib/softhsm.so"}}},
			"landlock disabled: PKCS#11 modules load libraries at runtime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			s := &Supervisor{cfg: &tc.cfg, log: log.NewLogfmtLogger(&out)}
			if err := s.Sandbox(); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Fatalf("log %q lacks %q", out.String(), tc.want)
			}
		})
	}
}

func TestLandlockSandbox(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("landlock is Linux only")
	}
	if landlockABI() == 0 {
		t.Skip("this kernel has no landlock (landlock_create_ruleset reports no ABI; /sys/kernel/security/lsm must list landlock): sandbox not tested")
	}
	f := newFixture(t)
	b := newBackend(t)
	listen := freePort(t)
	fleet := f.write("fleet.yaml", fmt.Sprintf("tunnels:\n%s", serverTunnel("a", listen, b.addr(), f,
		fmt.Sprintf("    cacert: %s\n    allow-cn: [client]\n", f.ca.CAFile))))
	other := t.TempDir()
	secret := filepath.Join(other, "secret")
	if err := os.WriteFile(secret, []byte("not for the tunnel"), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLandlockHelper$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), landlockHelperEnv+"=1",
		"LL_FLEET="+fleet, "LL_LISTEN="+listen, "LL_SECRET="+secret,
		"LL_CA="+f.ca.CAFile, "LL_CLIENT_CERT="+f.client.CertFile, "LL_CLIENT_KEY="+f.client.KeyFile)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if line == "SANDBOXED" {
			// Replace the server certificate by rename, as a renewal
			// does; the sandboxed child must pick it up on Reload.
			o := testpki.Localhost()
			o.Server = true
			f.server = f.ca.Issue("server", o)
			fmt.Fprintf(stdin, "%s\n", f.server.Cert.SerialNumber)
		}
	}
	io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	t.Logf("helper output:\n%s%s", out.String(), stderr.String())
	if strings.Contains(out.String(), "--- SKIP: TestLandlockHelper") {
		t.Skip("helper skipped")
	}
	if err != nil || !strings.Contains(out.String(), "--- PASS: TestLandlockHelper") {
		t.Fatalf("sandboxed helper failed: %v", err)
	}
	if !strings.Contains(out.String(), `msg="landlock rules applied"`) {
		t.Error("no \"landlock rules applied\" log line")
	}
}

// TestLandlockHelper is the sandboxed child of TestLandlockSandbox.
func TestLandlockHelper(t *testing.T) {
	if os.Getenv(landlockHelperEnv) == "" {
		t.Skip("run by TestLandlockSandbox in a child process")
	}
	cfg, err := configs.Load(os.Getenv("LL_FLEET"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{Logger: log.NewLogfmtLogger(log.NewSyncWriter(os.Stdout))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Sandbox(); err != nil {
		t.Fatalf("Sandbox: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, Options{}) }()
	defer func() {
		cancel()
		<-done
	}()

	if _, err := os.ReadFile(os.Getenv("LL_SECRET")); !errors.Is(err, syscall.EACCES) {
		t.Fatalf("reading a file outside the sandbox: got %v, want EACCES", err)
	}
	certDir := filepath.Dir(os.Getenv("LL_CA"))
	if err := os.WriteFile(filepath.Join(certDir, "planted"), nil, 0o600); !errors.Is(err, syscall.EACCES) {
		t.Fatalf("writing into the certificate directory: got %v, want EACCES", err)
	}

	// Credentials are read inside the sandbox: their directory is allowed.
	client, err := tls.LoadX509KeyPair(os.Getenv("LL_CLIENT_CERT"), os.Getenv("LL_CLIENT_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(os.Getenv("LL_CA"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tlsCfg := &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{client}}
	serial := func() string {
		t.Helper()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", os.Getenv("LL_LISTEN"), tlsCfg)
		if err != nil {
			t.Fatalf("dial through the sandboxed tunnel: %v", err)
		}
		defer c.Close()
		if err := echo(c, "ping"); err != nil {
			t.Fatalf("echo through the sandboxed tunnel: %v", err)
		}
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()

	fmt.Println("SANDBOXED")
	want, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil {
		t.Fatalf("waiting for the renewed certificate: %v", err)
	}
	want = strings.TrimSpace(want)
	if err := s.Reload(); err != nil {
		t.Fatalf("Reload in the sandbox: %v", err)
	}
	if got := serial(); got != want || got == before {
		t.Fatalf("after Reload the tunnel presents serial %s, want the renewed %s (was %s)", got, want, before)
	}
}
