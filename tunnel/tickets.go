package tunnel

import (
	"crypto/rand"
	"slices"
	"sync"
	"time"
)

// Session ticket keys of a server tunnel. They outlive settings generations,
// so sessions resume across credential reloads (VerifyConnection re-checks
// every resumed peer), and rotate like crypto/tls's own automatic keys: a
// new key every day, tickets accepted for a week. Setting keys explicitly,
// as a tunnel must to keep them across reloads, turns crypto/tls's rotation
// off; without this, one key would encrypt every ticket for the life of the
// process, and whoever read it from memory could open all of them (for TLS
// 1.2 resumption, which has no forward secrecy, the whole traffic).
var (
	ticketKeyRotation = 24 * time.Hour // a var for the tests
	ticketKeysKept    = 7
)

type ticketKeys struct {
	mu    sync.Mutex
	keys  [][32]byte
	timer *time.Timer
}

// newTicketKeys makes the first key.
func newTicketKeys() (*ticketKeys, error) {
	k := &ticketKeys{}
	if err := k.add(); err != nil {
		return nil, err
	}
	return k, nil
}

// add puts a new key first (the one new tickets are encrypted with) and
// drops those beyond ticketKeysKept.
func (k *ticketKeys) add() error {
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys = append([][32]byte{key}, k.keys[:min(len(k.keys), ticketKeysKept-1)]...)
	return nil
}

// current is a copy of the keys, newest first.
func (k *ticketKeys) current() [][32]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.keys)
}

// rotateTicketKeys adds a key every ticketKeyRotation and hands the set to
// the generation in use, from when the tunnel serves until Stop: a timer,
// no goroutine while it waits.
func (t *Tunnel) rotateTicketKeys() {
	if t.tickets == nil {
		return
	}
	t.tickets.mu.Lock()
	defer t.tickets.mu.Unlock()
	select {
	case <-t.stopped: // Stop closes stopped, then stops the timer under mu
		return
	default:
	}
	t.tickets.timer = time.AfterFunc(ticketKeyRotation, func() {
		select {
		case <-t.stopped:
			return
		default:
		}
		// Under reloadMu, as Commit hands the keys to the generation it
		// puts in use: otherwise a Commit that read the keys before this
		// add could install the old set after it, for a whole period.
		t.reloadMu.Lock()
		if err := t.tickets.add(); err != nil {
			t.log.Log("level", "error", "msg", "could not rotate session ticket keys", "err", err)
		} else if g := t.gen.Load(); g.server != nil {
			g.server.SetSessionTicketKeys(t.tickets.current())
		}
		t.reloadMu.Unlock()
		t.rotateTicketKeys()
	})
}

// stopTicketRotation stops the timer (Stop).
func (t *Tunnel) stopTicketRotation() {
	if t.tickets == nil {
		return
	}
	t.tickets.mu.Lock()
	defer t.tickets.mu.Unlock()
	if t.tickets.timer != nil {
		t.tickets.timer.Stop()
	}
}
