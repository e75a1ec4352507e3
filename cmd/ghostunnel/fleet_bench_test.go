package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkFleetBinary starts the binary (built without the race detector,
// as users run it; the full build and `make build-lite`) with N server
// tunnels sharing one certificate and reports, per start:
//
//	ms-to-ready    from exec until /_status answers 200 (every tunnel
//	               listening, every backend check passed)
//	MiB-rss        the process's VmRSS then
//	MiB-anon       its anonymous part (RssAnon); the rest is the
//	               executable's and libraries' file-backed pages
//	KiB-anon/tunnel  RssAnon above the 1-tunnel start, per extra tunnel
//
// the curve of memory and start time over fleet size. Compare with stunnel
// running the same number of services in one process.
func BenchmarkFleetBinary(b *testing.B) {
	p := newE2EPKI(b)
	backend := closingBackend(b)
	for _, build := range []struct {
		name, tags string
		env        []string
	}{
		{"full", shipTags, nil},
		{"lite", liteTags, []string{"CGO_ENABLED=0"}},
	} {
		bin := filepath.Join(b.TempDir(), "ghostunnel-"+build.name)
		args := []string{"build", "-trimpath", "-ldflags", "-s -w", "-o", bin}
		if build.tags != "" {
			args = append(args, "-tags", build.tags)
		}
		cmd := exec.Command("go", append(args, ".")...)
		cmd.Env = append(os.Environ(), build.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("go %v: %v\n%s", args, err, out)
		}
		var anon1 float64
		for _, n := range []int{1, 10, 100, 200, 1000} {
			b.Run(fmt.Sprintf("%s/tunnels=%d", build.name, n), func(b *testing.B) {
				var ready time.Duration
				var rss, anon float64
				for range b.N {
					d, r, a := startFleetBinary(b, bin, p, backend, n)
					ready += d
					rss += r
					anon += a
				}
				runs := float64(b.N)
				b.ReportMetric(float64(ready.Milliseconds())/runs, "ms-to-ready")
				b.ReportMetric(rss/runs/1024, "MiB-rss")
				b.ReportMetric(anon/runs/1024, "MiB-anon")
				if n == 1 {
					anon1 = anon / runs
				} else if anon1 > 0 {
					b.ReportMetric((anon/runs-anon1)/float64(n-1), "KiB-anon/tunnel")
				}
			})
		}
	}
}

// startFleetBinary runs bin with n server tunnels until /_status answers
// 200, then stops it; it returns the time to ready and VmRSS and RssAnon
// (KiB) at that point. The status server listens on a unix socket: the
// tunnels take ephemeral ports (listen 127.0.0.1:0), and one of them could
// take a TCP port picked for the status server in advance.
func startFleetBinary(b testing.TB, bin string, p *e2ePKI, backend string, n int) (time.Duration, float64, float64) {
	b.Helper()
	dir := b.TempDir()
	sock := filepath.Join(dir, "status.sock")
	var f strings.Builder
	fmt.Fprintf(&f, "status: unix:%s\ndefaults:\n  mode: server\n  target: %s\n  cert: %s\n  key: %s\n  cacert: %s\n  allow-all: true\ntunnels:\n",
		sock, backend, p.server.CertFile, p.server.KeyFile, p.ca.CAFile)
	for i := range n {
		fmt.Fprintf(&f, "  - name: t%04d\n    listen: 127.0.0.1:0\n", i)
	}
	path := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(path, []byte(f.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	defer client.CloseIdleConnections()
	t0 := time.Now()
	proc := startArgv(b, nil, bin, "-config", path)
	for deadline := t0.Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		select {
		case <-proc.done:
			b.Fatalf("%d tunnels: exited with code %d before /_status answered", n, proc.code)
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d tunnels: /_status not 200 within a minute", n)
		}
		resp, err := client.Get("http://status/_status")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
	}
	ready := time.Since(t0)
	rss, anon := procMemKiB(b, proc.cmd.Process.Pid)
	proc.signal(os.Interrupt)
	if code := proc.wait(30 * time.Second); code != 0 {
		b.Fatalf("exit code %d", code)
	}
	return ready, rss, anon
}

// procMemKiB reads VmRSS and RssAnon of pid.
func procMemKiB(tb testing.TB, pid int) (rss, anon float64) {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		key, val, _ := strings.Cut(line, ":")
		kib, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 64)
		switch key {
		case "VmRSS":
			rss = kib
		case "RssAnon":
			anon = kib
		}
	}
	return rss, anon
}

// closingBackend is the tunnels' shared target: it takes the backend
// checks' connections and closes them.
func closingBackend(tb testing.TB) string {
	return serveConns(tb, func(net.Conn) {})
}

// TestFleetBinarySmoke runs BenchmarkFleetBinary's start once, small, with
// the race-built binary, so that the benchmark cannot rot.
func TestFleetBinarySmoke(t *testing.T) {
	ready, rss, anon := startFleetBinary(t, binary(t), newE2EPKI(t), closingBackend(t), 20)
	if ready <= 0 || rss <= 0 || anon <= 0 || anon > rss {
		t.Fatalf("ready %v, rss %v KiB, anon %v KiB", ready, rss, anon)
	}
}
