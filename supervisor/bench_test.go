package supervisor

// Fleet scaling: how long one supervisor takes from New to a fleet that
// listens and answers /_status, and what each tunnel costs in memory, for
// fleets of 1 to 1000 server tunnels sharing one certificate.
//
//	go test -run '^$' -bench Fleet -benchtime 1x ./supervisor/

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// benchFleetReady bounds the wait for a fleet to come up.
const benchFleetReady = 2 * time.Minute

// BenchmarkFleetStart starts N server tunnels in one supervisor with a
// status server on 127.0.0.1:0 and reports:
//
//	ms-to-ready   from supervisor.New until /_status answers 200, which it
//	              does once every tunnel listens and every backend check
//	              (one dial per tunnel) passed
//	ms-status     one more /_status request on the ready fleet
//	ms-stop       from cancelling Run until it returns
//	KiB/tunnel    heap and stacks in use once ready, per tunnel (after a
//	              collection; the status server's share included)
func BenchmarkFleetStart(b *testing.B) {
	raiseFileLimit(b)
	dir := b.TempDir()
	ca := testpki.NewCA(dir, "ca")
	o := testpki.Localhost()
	o.Server = true
	leaf := ca.Issue("server", o)
	target := benchFleetBackend(b)
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"},
			DisableKeepAlives: true,
		},
	}
	defer client.CloseIdleConnections()

	for _, n := range []int{1, 10, 100, 200, 1000} {
		b.Run(fmt.Sprintf("tunnels=%d", n), func(b *testing.B) {
			var ready, status, stop time.Duration
			var perTunnel float64
			for range b.N {
				cfg := configs.DefaultConfig()
				cfg.Status = "127.0.0.1:0" // HTTPS, with the tunnels' certificate
				for i := range n {
					t := configs.DefaultTunnelSettings()
					t.Name = fmt.Sprintf("tunnel-%04d", i)
					t.Mode = configs.ModeServer
					t.Listen = "127.0.0.1:0"
					t.Target = target
					t.Cert, t.Key, t.CACert = leaf.CertFile, leaf.KeyFile, ca.CAFile
					t.AllowAll = true
					cfg.Tunnels = append(cfg.Tunnels, t)
				}
				mem0 := benchMemInUse()
				t0 := time.Now()
				sup, err := New(&cfg, Options{})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- sup.Run(ctx, Options{}) }()
				url := "https://" + sup.StatusAddr() + "/_status"
				if err := benchWaitStatus(client, url, t0.Add(benchFleetReady)); err != nil {
					cancel()
					<-done
					b.Fatalf("%d tunnels: %v", n, err)
				}
				ready += time.Since(t0)

				t1 := time.Now()
				if code, err := benchGet(client, url); err != nil || code != http.StatusOK {
					b.Fatalf("status again: %d %v", code, err)
				}
				status += time.Since(t1)

				b.StopTimer()
				perTunnel += (float64(benchMemInUse()) - float64(mem0)) / float64(n)
				b.StartTimer()

				t2 := time.Now()
				cancel()
				select {
				case err := <-done:
					if err != nil {
						b.Fatalf("Run: %v", err)
					}
				case <-time.After(time.Minute):
					b.Fatal("Run did not return a minute after cancel")
				}
				stop += time.Since(t2)
			}
			per := func(d time.Duration) float64 { return float64(d) / float64(b.N) / 1e6 }
			b.ReportMetric(per(ready), "ms-to-ready")
			b.ReportMetric(per(status), "ms-status")
			b.ReportMetric(per(stop), "ms-stop")
			b.ReportMetric(perTunnel/float64(b.N)/1024, "KiB/tunnel")
		})
	}
}

// raiseFileLimit lifts the soft descriptor limit to the hard one: 1000
// tunnels hold 1000 listeners, and each /_status round dials each target.
func raiseFileLimit(tb testing.TB) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatal(err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			tb.Fatal(err)
		}
	}
	if lim.Cur < 4096 {
		tb.Skipf("RLIMIT_NOFILE is %d; 1000 tunnels need about 3000 descriptors", lim.Cur)
	}
}

// benchFleetBackend is the target every tunnel shares: it accepts
// connections (the status server's backend checks) and closes them.
func benchFleetBackend(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					continue
				}
				return
			}
			c.Close()
		}
	}()
	tb.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// benchWaitStatus polls url until it answers 200 or deadline passes.
func benchWaitStatus(client *http.Client, url string, deadline time.Time) error {
	var code int
	var err error
	for time.Now().Before(deadline) {
		if code, err = benchGet(client, url); err == nil && code == http.StatusOK {
			return nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return fmt.Errorf("/_status not 200 in %v: last %d %v", benchFleetReady, code, err)
}

func benchGet(client *http.Client, url string) (int, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// benchMemInUse is heap and stacks in use after a full collection.
func benchMemInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}
