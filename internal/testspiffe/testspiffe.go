// Package testspiffe is an in-process fake SPIFFE Workload API for tests: a
// gRPC server on a unix socket that streams X509SVIDResponses, checking the
// security header as a real agent does, and a trust domain CA that issues
// SVIDs and the responses carrying them.
package testspiffe

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// Agent is a fake Workload API serving one identity.
type Agent struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	// Addr is unix:///PATH, as --use-workload-api-addr takes it.
	Addr string
	// Path is the socket's path.
	Path string
	// Fetches counts the FetchX509SVID streams opened.
	Fetches atomic.Int32

	mu      sync.Mutex
	current *workload.X509SVIDResponse
	streams map[chan *workload.X509SVIDResponse]struct{}
}

// Start serves first on a new unix socket until the test ends.
func Start(t testing.TB, first *workload.X509SVIDResponse) *Agent {
	t.Helper()
	// A short directory: unix socket paths are limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "wlapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{Addr: "unix://" + path, Path: path, current: first,
		streams: make(map[chan *workload.X509SVIDResponse]struct{})}
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, a)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return a
}

// FetchX509SVID implements the Workload API.
func (a *Agent) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	a.Fetches.Add(1)
	ch := make(chan *workload.X509SVIDResponse, 8)
	a.mu.Lock()
	a.streams[ch] = struct{}{}
	cur := a.current
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.streams, ch)
		a.mu.Unlock()
	}()
	if err := stream.Send(cur); err != nil {
		return err
	}
	for {
		select {
		case r := <-ch:
			if err := stream.Send(r); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

// Push sends r on every open stream and to later ones: an SVID rotation.
func (a *Agent) Push(r *workload.X509SVIDResponse) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.current = r
	for ch := range a.streams {
		select {
		case ch <- r:
		default: // a stream that stopped reading; it ends with its context
		}
	}
}

// PKI is a trust domain's CA.
type PKI struct {
	CA *testpki.CA
}

// NewPKI makes the CA of example.org in a temp dir.
func NewPKI(t testing.TB) *PKI {
	return &PKI{CA: testpki.NewCA(t.TempDir(), "example.org")}
}

// Issue makes an SVID for id (a zero notAfter is testpki's default) and the
// response carrying it and the bundle.
func (p *PKI) Issue(t testing.TB, name, id string, notAfter time.Time) (*testpki.Leaf, *workload.X509SVIDResponse) {
	t.Helper()
	l := p.CA.Issue(name, testpki.Options{CN: name, URIs: []string{id}, NotAfter: notAfter})
	key, err := x509.MarshalPKCS8PrivateKey(l.Key)
	if err != nil {
		t.Fatal(err)
	}
	return l, &workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
		SpiffeId: id, X509Svid: l.Cert.Raw, X509SvidKey: key, Bundle: p.CA.Cert.Raw,
	}}}
}
