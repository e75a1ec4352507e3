//go:build !nospiffe

package tunnel

// The Workload API client, from go-spiffe (builds without the nospiffe tag).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func defaultWorkloadAddr() (string, bool) { return workloadapi.GetDefaultAddress() }

func validateWorkloadAddr(addr string) error { return workloadapi.ValidateAddress(addr) }

func startWorkloadSource(addr string) (*workloadSource, error) {
	ctx, cancel := context.WithCancel(context.Background())
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(addr))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("workload API %s: %w", addr, err)
	}
	s := &workloadSource{addr: addr, cancel: cancel, client: client,
		done: make(chan struct{}), ready: make(chan struct{}), subs: make(map[chan struct{}]struct{})}
	w := x509Watcher{s}
	go func() {
		defer close(s.done)
		// Retries with backoff until the context ends (or the agent
		// refuses the request as invalid).
		err := client.WatchX509Context(ctx, w)
		if err != nil && ctx.Err() == nil {
			w.OnX509ContextWatchError(err)
		}
	}()
	return s, nil
}

// x509Watcher feeds a workloadSource (workloadapi.X509ContextWatcher).
type x509Watcher struct{ s *workloadSource }

// OnX509ContextUpdate publishes a new SVID and bundle set.
func (w x509Watcher) OnX509ContextUpdate(c *workloadapi.X509Context) {
	if c == nil || len(c.SVIDs) == 0 || c.Bundles == nil {
		return
	}
	svid := c.DefaultSVID()
	cert := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, x := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, x.Raw)
	}
	// Peers verified against this update's bundles are remembered with
	// it (resume.go's chainCache): a client that reconnects, or resumes,
	// costs a lookup until the next update brings new bundles.
	bundles, verified := c.Bundles, new(chainCache)
	w.s.publish(&workloadState{cert: cert, verify: func(chain []*x509.Certificate) error {
		key := chainKey(chain)
		if verified.verified(key, time.Now()) {
			return nil
		}
		_, chains, err := x509svid.Verify(chain, bundles)
		if err != nil {
			return err
		}
		if len(chains) > 0 {
			verified.add(key, chains[0])
		}
		return nil
	}})
}

// OnX509ContextWatchError records the error for the timeout message.
func (w x509Watcher) OnX509ContextWatchError(err error) { w.s.watchError(err) }
