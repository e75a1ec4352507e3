package statusd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// checker runs backend checks. Each tunnel (by name) has at most one check in
// flight; concurrent status requests share it, and a finished result is
// reused for ttl. So a burst of requests costs one dial per tunnel.
//
// Every check goroutine belongs to the checker: close cancels them all and
// wait waits for them.
type checker struct {
	timeout time.Duration
	ttl     time.Duration // < 0: do not reuse finished results

	base   context.Context // parent of every check; canceled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	entries map[string]*checkEntry
}

// checkEntry is one check of one tunnel. err and finished are written before
// done is closed, and read after.
type checkEntry struct {
	done     chan struct{}
	timeout  time.Duration
	deadline time.Time
	err      error
	finished time.Time
}

func newChecker(timeout, ttl time.Duration) *checker {
	ctx, cancel := context.WithCancel(context.Background())
	return &checker{
		timeout: timeout,
		ttl:     ttl,
		base:    ctx,
		cancel:  cancel,
		entries: make(map[string]*checkEntry),
	}
}

// fresh reports whether e can be shared at now: running and within its
// deadline, or finished less than ttl ago. (A check that ignores its deadline
// is not waited for again: the next request starts a new one.) Called with
// c.mu held.
func (c *checker) fresh(e *checkEntry, now time.Time) bool {
	select {
	case <-e.done:
		return c.ttl > 0 && now.Sub(e.finished) < c.ttl
	default:
		return now.Before(e.deadline)
	}
}

// check returns the backend health of each tunnel of ts (nil = healthy), in
// order. It returns within the check timeout, or earlier if ctx is done;
// checks still running then are reported as timed out (and keep running in
// the background until their own deadline, for the next request to reuse).
// With all set, ts is the whole fleet and results of vanished tunnels are
// forgotten.
func (c *checker) check(ctx context.Context, ts []Tunnel, all bool) []error {
	errs := make([]error, len(ts))
	entries := make([]*checkEntry, len(ts))
	now := time.Now()
	var latest time.Time

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		err := errors.New("status server is shutting down")
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	for i, t := range ts {
		name := t.Name()
		e := c.entries[name]
		if e == nil || !c.fresh(e, now) {
			timeout := c.timeout
			if ct, ok := t.(CheckTimeouter); ok && ct.CheckTimeout() > 0 {
				timeout = ct.CheckTimeout()
			}
			e = &checkEntry{done: make(chan struct{}), timeout: timeout, deadline: now.Add(timeout)}
			c.entries[name] = e
			c.wg.Add(1)
			go c.run(t, e)
		}
		entries[i] = e
		if e.deadline.After(latest) {
			latest = e.deadline
		}
	}
	if all && len(c.entries) > len(ts) {
		names := make(map[string]struct{}, len(ts))
		for _, t := range ts {
			names[t.Name()] = struct{}{}
		}
		for name := range c.entries {
			if _, ok := names[name]; !ok {
				delete(c.entries, name)
			}
		}
	}
	c.mu.Unlock()

	timer := time.NewTimer(time.Until(latest))
	defer timer.Stop()
	expired := false
	for i, e := range entries {
		if !expired {
			select {
			case <-e.done:
			case <-timer.C:
				expired = true
			case <-ctx.Done():
				expired = true
			}
		}
		select {
		case <-e.done:
			errs[i] = e.err
		default:
			errs[i] = fmt.Errorf("backend check timed out after %s", e.timeout)
		}
	}
	return errs
}

// run performs one check and publishes its result.
func (c *checker) run(t Tunnel, e *checkEntry) {
	defer c.wg.Done()
	ctx, cancel := context.WithDeadline(c.base, e.deadline)
	defer cancel()
	err := callCheck(ctx, t)
	c.mu.Lock()
	e.err = err
	e.finished = time.Now()
	close(e.done)
	c.mu.Unlock()
}

// callCheck calls t.CheckBackend, turning a panic into an error so that a
// faulty check cannot take the process down.
func callCheck(ctx context.Context, t Tunnel) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("backend check panicked: %v", r)
		}
	}()
	return t.CheckBackend(ctx)
}

// close cancels running checks and refuses new ones.
func (c *checker) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
}

// wait waits for the check goroutines to return, or for ctx.
func (c *checker) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for backend checks: %w", ctx.Err())
	}
}
