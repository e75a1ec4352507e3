package supervisor

import (
	"bufio"
	"context"
	"crypto/tls"
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
	"github.com/ghostunnel-fleet/ghostunnel/tunnel"
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

// TestLandlockSandbox runs TestLandlockHelper sandboxed in a child and
// drives it from here: the tunnel is dialled from this process (the
// child's own sandbox would refuse it a connection to its listen port),
// the server certificate is renewed by rename and the child reloads.
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
	// A listener on a port the child's config never names: the child
	// must not be able to connect to it.
	forbidden := newBackend(t)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLandlockHelper$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), landlockHelperEnv+"=1",
		"LL_FLEET="+fleet, "LL_SECRET="+secret, "LL_TARGET="+b.addr(), "LL_FORBIDDEN="+forbidden.addr(),
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
	serial := func() string {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", listen, f.clientTLS(nil))
		if err != nil {
			t.Errorf("dial through the sandboxed tunnel: %v", err)
			return ""
		}
		defer c.Close()
		if err := echo(c, "ping"); err != nil {
			t.Errorf("echo through the sandboxed tunnel: %v", err)
		}
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	var out strings.Builder
	var before, want string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		switch line {
		case "SANDBOXED":
			before = serial()
			// Replace the server certificate by rename, as a renewal
			// does; the sandboxed child must pick it up on Reload.
			o := testpki.Localhost()
			o.Server = true
			f.server = f.ca.Issue("server", o)
			want = f.server.Cert.SerialNumber.String()
			fmt.Fprintln(stdin, "reload")
		case "RELOADED":
			if got := serial(); got != want || got == before {
				t.Errorf("after Reload the tunnel presents serial %s, want the renewed %s (was %s)", got, want, before)
			}
			stdin.Close()
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
	if !strings.Contains(out.String(), "RELOADED") {
		t.Fatal("the helper never reloaded")
	}
	wantScope := "scope=filesystem "
	if landlockABI() >= landlockNetABI {
		wantScope = "scope=filesystem,network "
	}
	if !strings.Contains(out.String(), `msg="landlock rules applied"`) || !strings.Contains(out.String(), wantScope) {
		t.Errorf("no \"landlock rules applied\" log line with %q", wantScope)
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
	if _, err := tls.LoadX509KeyPair(os.Getenv("LL_CLIENT_CERT"), os.Getenv("LL_CLIENT_KEY")); err != nil {
		t.Fatal(err)
	}

	if landlockABI() < landlockNetABI {
		t.Logf("kernel landlock ABI %d < %d: no TCP rules to check", landlockABI(), landlockNetABI)
	} else {
		// The target's port is allowed; another listener's is not.
		c, err := net.DialTimeout("tcp", os.Getenv("LL_TARGET"), 5*time.Second)
		if err != nil {
			t.Fatalf("connecting to the target in the sandbox: %v", err)
		}
		c.Close()
		if c, err := net.DialTimeout("tcp", os.Getenv("LL_FORBIDDEN"), 5*time.Second); !errors.Is(err, syscall.EACCES) {
			if c != nil {
				c.Close()
			}
			t.Fatalf("connecting to a port outside the sandbox: got %v, want EACCES", err)
		}
		// Binding a new port fails, through the tunnels' own Listen (which
		// must not fall back to MPTCP, which Landlock leaves alone) and
		// through a plain TCP socket.
		if ln, err := tunnel.Listen("127.0.0.1:0"); !errors.Is(err, syscall.EACCES) {
			if ln != nil {
				ln.Close()
			}
			t.Fatalf("tunnel.Listen on a new port in the sandbox: got %v, want EACCES", err)
		}
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		if ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0"); !errors.Is(err, syscall.EACCES) {
			if ln != nil {
				ln.Close()
			}
			t.Fatalf("binding a new TCP port in the sandbox: got %v, want EACCES", err)
		}
	}

	fmt.Println("SANDBOXED")
	in := bufio.NewReader(os.Stdin)
	if cmd, err := in.ReadString('\n'); err != nil || strings.TrimSpace(cmd) != "reload" {
		t.Fatalf("waiting for the renewed certificate: %q, %v", cmd, err)
	}
	if err := s.Reload(); err != nil {
		t.Fatalf("Reload in the sandbox: %v", err)
	}
	fmt.Println("RELOADED")
	// The parent checks the new certificate, then closes stdin.
	io.Copy(io.Discard, in)
}

func TestLandlockPorts(t *testing.T) {
	for _, name := range proxyEnv {
		t.Setenv(name, "")
	}
	t.Setenv("SPIFFE_ENDPOINT_SOCKET", "")
	server := func(listen, target string) configs.Tunnel {
		return configs.Tunnel{Name: "t", Mode: "server", Listen: listen, Target: target}
	}
	client := func(listen, target, proxy string) configs.Tunnel {
		return configs.Tunnel{Name: "t", Mode: "client", Listen: listen, Target: target, Proxy: configs.Secret(proxy)}
	}
	with := func(tn configs.Tunnel, edit func(*configs.Tunnel)) configs.Tunnel {
		edit(&tn)
		return tn
	}
	for _, tc := range []struct {
		name          string
		cfg           configs.Config
		bound         []net.Addr
		env           map[string]string
		bind, connect []uint16 // connect without 53, which is always there
	}{
		{name: "server listen and target",
			cfg:  configs.Config{Tunnels: []configs.Tunnel{server("127.0.0.1:8443", "127.0.0.1:8080")}},
			bind: []uint16{8443}, connect: []uint16{8080}},
		{name: "client target by name, IPv6 listen",
			cfg:  configs.Config{Tunnels: []configs.Tunnel{client("[::1]:8000", "api.internal:443", "")}},
			bind: []uint16{8000}, connect: []uint16{443}},
		{name: "unix listen and target give no port",
			cfg: configs.Config{Tunnels: []configs.Tunnel{server("unix:/run/a.sock", "unix:/run/b.sock")}}},
		{name: "systemd listen gives no port",
			cfg:     configs.Config{Tunnels: []configs.Tunnel{server("systemd:web", "127.0.0.1:8080")}},
			connect: []uint16{8080}},
		{name: "status HOST:PORT", cfg: configs.Config{Status: "127.0.0.1:9000"}, bind: []uint16{9000}},
		{name: "status https", cfg: configs.Config{Status: "https://localhost:9001"}, bind: []uint16{9001}},
		{name: "status http", cfg: configs.Config{Status: "http://127.0.0.1:9002/"}, bind: []uint16{9002}},
		{name: "status unix", cfg: configs.Config{Status: "unix:/run/status.sock"}},
		{name: "status systemd", cfg: configs.Config{Status: "systemd:status"}},
		{name: "port 0 adds the bound ports",
			cfg:   configs.Config{Status: "127.0.0.1:0", Tunnels: []configs.Tunnel{server("127.0.0.1:0", "127.0.0.1:8080")}},
			bound: []net.Addr{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 41000}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 41001}, &net.UnixAddr{Name: "/x", Net: "unix"}},
			bind:  []uint16{0, 41000, 41001}, connect: []uint16{8080}},
		{name: "http proxy with port",
			cfg:  configs.Config{Tunnels: []configs.Tunnel{client("127.0.0.1:8000", "api.example:443", "http://user:pw@proxy:3128")}},
			bind: []uint16{8000}, connect: []uint16{443, 3128}},
		{name: "http proxy without port: tunnel/proxydial.go's 8080",
			cfg:  configs.Config{Tunnels: []configs.Tunnel{client("127.0.0.1:8000", "api.example:443", "http://proxy")}},
			bind: []uint16{8000}, connect: []uint16{443, 8080}},
		{name: "socks5 proxy without port",
			cfg:  configs.Config{Tunnels: []configs.Tunnel{client("127.0.0.1:8000", "api.example:8443", "socks5://proxy")}},
			bind: []uint16{8000}, connect: []uint16{1080, 8443}},
		{name: "socks5h proxy with port",
			cfg:  configs.Config{Tunnels: []configs.Tunnel{client("127.0.0.1:8000", "api.example:8443", "socks5h://proxy:9050")}},
			bind: []uint16{8000}, connect: []uint16{8443, 9050}},
		{name: "target-status",
			cfg: configs.Config{Tunnels: []configs.Tunnel{
				with(server("127.0.0.1:1", "127.0.0.1:2"), func(t *configs.Tunnel) { t.TargetStatus = "http://127.0.0.1:8081/health" }),
				with(server("127.0.0.1:3", "127.0.0.1:4"), func(t *configs.Tunnel) { t.TargetStatus = "https://localhost/health" })}},
			bind: []uint16{1, 3}, connect: []uint16{2, 4, 443, 8081}},
		{name: "ACME default CA",
			cfg:  configs.Config{Tunnels: []configs.Tunnel{with(server("0.0.0.0:443", "127.0.0.1:80"), func(t *configs.Tunnel) { t.AutoACMECert = "example.com" })}},
			bind: []uint16{443}, connect: []uint16{80, 443}},
		{name: "ACME CA and test CA URLs",
			cfg: configs.Config{Tunnels: []configs.Tunnel{
				with(server("127.0.0.1:1", "127.0.0.1:2"), func(t *configs.Tunnel) {
					t.AutoACMECert, t.AutoACMECA = "a.example", "https://ca.internal:14000/dir"
				}),
				with(server("127.0.0.1:3", "127.0.0.1:4"), func(t *configs.Tunnel) {
					t.AutoACMECert, t.AutoACMECA, t.AutoACMETestCA = "b.example", "https://ignored:1/dir", "http://pebble/dir"
				})}},
			bind: []uint16{1, 3}, connect: []uint16{2, 4, 80, 14000}},
		{name: "ACME through $HTTPS_PROXY",
			cfg:  configs.Config{Tunnels: []configs.Tunnel{with(server("127.0.0.1:1", "127.0.0.1:2"), func(t *configs.Tunnel) { t.AutoACMECert = "example.com" })}},
			env:  map[string]string{"HTTPS_PROXY": "proxy.corp:3128", "http_proxy": "https://proxy.corp"},
			bind: []uint16{1}, connect: []uint16{2, 443, 3128}},
		{name: "$HTTPS_PROXY unused without ACME or metrics-url",
			cfg:  configs.Config{Tunnels: []configs.Tunnel{server("127.0.0.1:1", "127.0.0.1:2")}},
			env:  map[string]string{"HTTPS_PROXY": "proxy.corp:3128"},
			bind: []uint16{1}, connect: []uint16{2}},
		{name: "metrics graphite and url",
			cfg:     configs.Config{MetricsGraphite: "graphite.internal:2003", MetricsURL: "http://push.internal:9091/metrics"},
			connect: []uint16{2003, 9091}},
		{name: "metrics url default https port",
			cfg:     configs.Config{MetricsURL: "https://push.internal/metrics"},
			connect: []uint16{443}},
		{name: "workload API over tcp, and over unix",
			cfg: configs.Config{Tunnels: []configs.Tunnel{
				with(server("127.0.0.1:1", "127.0.0.1:2"), func(t *configs.Tunnel) { t.UseWorkloadAPIAddr = "tcp://127.0.0.1:8081" }),
				with(server("127.0.0.1:3", "127.0.0.1:4"), func(t *configs.Tunnel) { t.UseWorkloadAPIAddr = "unix:///run/spire/agent.sock" })}},
			bind: []uint16{1, 3}, connect: []uint16{2, 4, 8081}},
		{name: "workload API from $SPIFFE_ENDPOINT_SOCKET",
			cfg:  configs.Config{Tunnels: []configs.Tunnel{with(server("127.0.0.1:1", "127.0.0.1:2"), func(t *configs.Tunnel) { t.UseWorkloadAPI = true })}},
			env:  map[string]string{"SPIFFE_ENDPOINT_SOCKET": "tcp://[::1]:7000"},
			bind: []uint16{1}, connect: []uint16{2, 7000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			got := landlockPorts(&tc.cfg, tc.bound)
			wantConnect := append([]uint16{dnsPort}, tc.connect...)
			slices.Sort(wantConnect)
			if !slices.Equal(got.bind, tc.bind) {
				t.Errorf("bind ports %v, want %v", got.bind, tc.bind)
			}
			if !slices.Equal(got.connect, wantConnect) {
				t.Errorf("connect ports %v, want %v", got.connect, wantConnect)
			}
		})
	}
}

// TestLandlockReloadCheck: with the sandbox applied, a reload that needs a
// port or a directory the rules do not allow is refused by name, before
// anything is built; a reload within the rules passes.
func TestLandlockReloadCheck(t *testing.T) {
	for _, name := range proxyEnv {
		t.Setenv(name, "")
	}
	dir := t.TempDir()
	certs, elsewhere := filepath.Join(dir, "certs"), filepath.Join(dir, "elsewhere")
	running := &configs.Config{Path: filepath.Join(dir, "fleet", "fleet.yaml"), Status: "127.0.0.1:9000", Tunnels: []configs.Tunnel{
		{Name: "a", Mode: "server", Listen: "127.0.0.1:8443", Target: "127.0.0.1:8080", Cert: filepath.Join(certs, "a.crt"), Key: filepath.Join(certs, "a.key")},
	}}
	rules := &sandboxRules{paths: landlockPaths(running), ports: landlockPorts(running, nil), net: true}
	tun := func(edit func(*configs.Tunnel)) configs.Tunnel {
		tn := running.Tunnels[0]
		edit(&tn)
		return tn
	}
	for _, tc := range []struct {
		name  string
		net   bool
		tn    configs.Tunnel
		kind  string
		wants []string // substrings of the errors, none when empty
	}{
		{"same ports, new allow rule", true, tun(func(t *configs.Tunnel) { t.AllowCN = []string{"x"} }), "changed", nil},
		{"target on the other tunnel's port", true, tun(func(t *configs.Tunnel) { t.Name = "b"; t.Listen = "127.0.0.1:8443" }), "added", nil},
		{"new listen port", true, tun(func(t *configs.Tunnel) { t.Name = "b"; t.Listen = "127.0.0.1:9443" }), "added",
			[]string{`tunnel "b": listen: the landlock sandbox does not allow it to bind TCP port 9443; restart ghostunnel`, "disable-landlock: true"}},
		{"moved listen port", true, tun(func(t *configs.Tunnel) { t.Listen = "127.0.0.1:9443" }), "replaced",
			[]string{`tunnel "a": listen: the landlock sandbox does not allow it to bind TCP port 9443`}},
		{"new target port", true, tun(func(t *configs.Tunnel) { t.Target = "127.0.0.1:5432" }), "changed",
			[]string{`tunnel "a": target: the landlock sandbox does not allow it to connect to TCP port 5432`}},
		{"new proxy", true, tun(func(t *configs.Tunnel) {
			t.Mode = "client"
			t.Target = "127.0.0.1:8080"
			t.Proxy = "socks5://127.0.0.1"
		}), "changed",
			[]string{`tunnel "a": proxy: the landlock sandbox does not allow it to connect to TCP port 1080`}},
		{"ports unchecked on a kernel without TCP rules", false, tun(func(t *configs.Tunnel) { t.Target = "127.0.0.1:5432" }), "changed", nil},
		{"unchanged tunnels are not checked", true, tun(func(t *configs.Tunnel) { t.Target = "127.0.0.1:5432" }), "unchanged", nil},
		{"certificate in another directory", false, tun(func(t *configs.Tunnel) { t.Cert = filepath.Join(elsewhere, "a.crt") }), "changed",
			[]string{`tunnel "a": ` + filepath.Join(elsewhere, "a.crt") + ": the landlock sandbox does not allow reading files in " + elsewhere}},
		{"certificate in a subdirectory", false, tun(func(t *configs.Tunnel) { t.Cert = filepath.Join(certs, "new", "a.crt") }), "changed", nil},
		{"a PKCS#11 module", false, tun(func(t *configs.Tunnel) { t.PKCS11Module = filepath.Join(certs, "softhsm2.so") }), "changed",
			[]string{`tunnel "a": pkcs11-module: PKCS#11 modules load libraries the landlock sandbox does not allow; restart ghostunnel`}},
		{"unix socket in a new directory", false, tun(func(t *configs.Tunnel) { t.Listen = "unix:" + filepath.Join(elsewhere, "a.sock") }), "replaced",
			[]string{"listen: the landlock sandbox does not allow creating sockets in " + elsewhere}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := *rules
			r.net = tc.net
			s := &Supervisor{sandbox: &r}
			next := &configs.Config{Tunnels: []configs.Tunnel{running.Tunnels[0], tc.tn}}
			if tc.tn.Name == "a" {
				next.Tunnels = next.Tunnels[1:]
			}
			errs := s.sandboxCheck("fleet.yaml", next, []Change{{Name: tc.tn.Name, Kind: tc.kind}})
			got := errors.Join(errs...)
			if len(tc.wants) == 0 {
				if got != nil {
					t.Fatalf("refused: %v", got)
				}
				return
			}
			if got == nil {
				t.Fatal("not refused")
			}
			for _, w := range tc.wants {
				if !strings.Contains(got.Error(), w) {
					t.Errorf("error %q lacks %q", got, w)
				}
			}
		})
	}
	if errs := (&Supervisor{}).sandboxCheck("fleet.yaml", &configs.Config{Tunnels: []configs.Tunnel{{Name: "x", Listen: "127.0.0.1:1"}}},
		[]Change{{Name: "x", Kind: "added"}}); errs != nil {
		t.Fatalf("without a sandbox the check refuses: %v", errs)
	}
}
