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
		// It always returns an error: the context's once it is
		// cancelled, the agent's otherwise.
		if err := client.WatchX509Context(ctx, w); ctx.Err() == nil {
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
	w.publish(&workloadState{cert: cert, verify: func(chain []*x509.Certificate) error {
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

// publish makes st the source's current update (ending acquire's wait at
// the first one) and tells the subscribed tunnels.
func (w x509Watcher) publish(st *workloadState) {
	s := w.s
	if s.state.Swap(st) == nil {
		close(s.ready)
	}
	s.mu.Lock()
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
}

// OnX509ContextWatchError records the error for the timeout message; the
// watch retries by itself.
func (w x509Watcher) OnX509ContextWatchError(err error) {
	if err != nil {
		msg := err.Error()
		w.s.lastErr.Store(&msg)
	}
}
