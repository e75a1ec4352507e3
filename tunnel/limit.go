package tunnel

import "sync"

// limiter caps open connections at a maximum that a reload may change.
// Acquire waits, so excess connections queue in the listen backlog as they
// do upstream, rather than being accepted and dropped.
type limiter struct {
	mu      sync.Mutex
	cond    *sync.Cond
	n, max  int // max 0: unlimited
	stopped bool
}

func newLimiter(max int) *limiter {
	l := &limiter{max: max}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// acquire takes a slot; false once the limiter is stopped.
func (l *limiter) acquire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for !l.stopped && l.max > 0 && l.n >= l.max {
		l.cond.Wait()
	}
	if l.stopped {
		return false
	}
	l.n++
	return true
}

func (l *limiter) release() {
	l.mu.Lock()
	l.n--
	l.mu.Unlock()
	l.cond.Signal()
}

func (l *limiter) setMax(max int) {
	l.mu.Lock()
	l.max = max
	l.mu.Unlock()
	l.cond.Broadcast()
}

func (l *limiter) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	l.cond.Broadcast()
}
