package tunnel

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
)

// Buffer sizes. A read takes up to readSize bytes, which a TLS writer turns
// into sixteen full records; the pooled buffer has room for the framing of
// those records too, so one buffer size serves reads and coalesced writes.
// On loopback, where the kernel's per-call and per-segment work dominates,
// 256 KiB reads and writes cost 0.2 s of CPU per GiB less for the two
// proxies than 64 KiB ones (see docs/PERFORMANCE.md); 512 KiB gains little
// more and doubles what a busy connection holds. Buffers are only held
// while data moves.
const (
	readSize  = 256 << 10
	bufSize   = readSize + 8<<10
	smallSize = 2 << 10 // what an idle TLS reader waits with
	// maxRecord is the most plaintext one TLS record carries; a TLS read
	// that returns less has drained what the peer sent.
	maxRecord = 16 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// sock is a plaintext socket: the backend or client side of a pipe in the
// clear, or the transport under a tls.Conn. It adds two things to net.Conn:
//
//   - readIdle waits for data without holding a buffer, so an idle
//     connection pins no copy buffer;
//   - coalescing: while a large tls.Conn.Write runs, its records are gathered
//     and sent with one write system call instead of one per record.
type sock struct {
	net.Conn
	raw syscall.RawConn // nil when the conn has no file descriptor

	// readIdle state, used only by the one reading goroutine.
	rbuf   *[]byte
	rn     int
	rerr   error
	readFn func(fd uintptr) bool
	// noWait makes Read return errWouldBlock instead of waiting; set only
	// by the goroutine that reads the tls.Conn over this sock.
	noWait bool
	// ra holds what Read took from the socket beyond what the tls.Conn
	// asked for: (*ra)[raOff:raEnd]. Nil when empty.
	ra           *[]byte
	raOff, raEnd int

	mu       sync.Mutex // guards the write side
	gather   bool
	wbuf     *[]byte
	wpending []byte
}

func newSock(c net.Conn) *sock {
	s := &sock{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			s.raw = raw
			s.readFn = s.tryRead
		}
	}
	return s
}

// tryRead is the RawConn callback: it takes a buffer only for the moment of
// the read system call and gives it back when there is nothing to read, so
// the goroutine then parks in the poller without one.
func (s *sock) tryRead(fd uintptr) bool {
	if s.rbuf == nil {
		s.rbuf = getBuf()
	}
	for {
		n, err := syscall.Read(int(fd), (*s.rbuf)[:readSize])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			putBuf(s.rbuf)
			s.rbuf = nil
			if s.noWait {
				s.rn, s.rerr = 0, errWouldBlock
				return true
			}
			return false
		case err != nil:
			s.rn, s.rerr = 0, err
		case n == 0:
			s.rn, s.rerr = 0, io.EOF
		default:
			s.rn, s.rerr = n, nil
		}
		return true
	}
}

// readIdle returns a pooled buffer holding what was read; the caller returns
// it with putBuf. The buffer is nil when n is 0.
func (s *sock) readIdle() (buf *[]byte, n int, err error) {
	if s.raw == nil {
		b := getBuf()
		n, err = s.Conn.Read((*b)[:readSize])
		if n == 0 {
			putBuf(b)
			return nil, 0, err
		}
		return b, n, err
	}
	s.rn, s.rerr = 0, nil
	if err := s.raw.Read(s.readFn); err != nil {
		if s.rbuf != nil {
			putBuf(s.rbuf)
			s.rbuf = nil
		}
		return nil, 0, mapNetErr(err)
	}
	buf, s.rbuf = s.rbuf, nil
	if s.rn == 0 && buf != nil {
		putBuf(buf)
		buf = nil
	}
	return buf, s.rn, s.rerr
}

// mapNetErr makes RawConn errors look like the ones net.Conn.Read returns.
func mapNetErr(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return net.ErrClosed
	}
	return err
}

// errWouldBlock is what a no-wait Read returns when the socket has nothing.
// crypto/tls treats a temporary net.Error from its transport as it treats a
// read deadline: the record layer keeps what it has and the next Read
// carries on, so the tls.Conn stays usable.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "read would block" }
func (wouldBlock) Timeout() bool   { return false }
func (wouldBlock) Temporary() bool { return true }

// Read is how a tls.Conn reads its transport. It reads as much as the
// socket holds, up to readSize, into a pooled buffer, and serves the
// tls.Conn's smaller reads from it: a tls.Conn asks for little more than a
// record at a time, and one large read system call costs less than many
// small ones (and the copy it adds). The buffer goes back to the pool once
// drained, so a connection waiting for data holds none. With noWait set,
// Read returns errWouldBlock rather than wait.
func (s *sock) Read(p []byte) (int, error) {
	if s.raw == nil {
		return s.Conn.Read(p)
	}
	if s.ra == nil {
		buf, n, err := s.readIdle()
		if n == 0 {
			return 0, err
		}
		s.ra, s.raOff, s.raEnd = buf, 0, n
	}
	n := copy(p, (*s.ra)[s.raOff:s.raEnd])
	s.raOff += n
	if s.raOff == s.raEnd {
		putBuf(s.ra)
		s.ra = nil
	}
	return n, nil
}

// dropReadAhead returns the read-ahead buffer once nothing will read on.
func (s *sock) dropReadAhead() {
	if s.ra != nil {
		putBuf(s.ra)
		s.ra = nil
	}
}

// Write sends b, or gathers it while a coalesced TLS write is under way.
func (s *sock) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gather {
		if len(s.wpending)+len(b) > cap(s.wpending) {
			if err := s.flushLocked(); err != nil {
				return 0, err
			}
			if len(b) > cap(s.wpending) {
				return s.Conn.Write(b)
			}
		}
		s.wpending = append(s.wpending, b...)
		return len(b), nil
	}
	return s.Conn.Write(b)
}

func (s *sock) flushLocked() error {
	if len(s.wpending) == 0 {
		return nil
	}
	_, err := s.Conn.Write(s.wpending)
	s.wpending = s.wpending[:0]
	return err
}

// writeTLS writes p through t, whose transport is s, in as few system calls
// as the records allow.
func (s *sock) writeTLS(t *tls.Conn, p []byte) (int, error) {
	if len(p) <= maxRecord {
		return t.Write(p) // one record: nothing to gather
	}
	s.mu.Lock()
	s.wbuf = getBuf()
	s.wpending = (*s.wbuf)[:0]
	s.gather = true
	s.mu.Unlock()

	n, err := t.Write(p)

	s.mu.Lock()
	ferr := s.flushLocked()
	s.gather = false
	putBuf(s.wbuf)
	s.wbuf, s.wpending = nil, nil
	s.mu.Unlock()
	if err == nil && ferr != nil {
		err = ferr
	}
	return n, err
}

// CloseWrite half-closes the socket when the transport supports it.
func (s *sock) CloseWrite() error {
	if cw, ok := s.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// end is one side of a pipe: a plaintext sock, or a TLS conn over a sock.
type end struct {
	sock *sock
	tls  *tls.Conn // nil on the plaintext side
}

// conn is what deadlines and Close act on.
func (e *end) conn() net.Conn {
	if e.tls != nil {
		return e.tls
	}
	return e.sock
}

func (e *end) write(p []byte) (int, error) {
	if e.tls != nil {
		return e.sock.writeTLS(e.tls, p)
	}
	return e.sock.Write(p)
}

// closeWrite signals EOF to the peer while still reading from it: a TLS
// close_notify followed by a TCP FIN, or just the FIN.
func (e *end) closeWrite() error {
	if e.tls != nil {
		if err := e.tls.CloseWrite(); err != nil {
			return err
		}
	}
	return e.sock.CloseWrite()
}

// copyTo moves bytes from e to dst until EOF or an error, then half-closes
// dst. add is told of every chunk written. It returns the bytes written and
// the error that ended the copy (nil for a clean EOF).
func (e *end) copyTo(dst *end, add func(int)) (int64, error) {
	var total int64
	var err error
	if e.tls == nil {
		total, err = e.copyPlain(dst, add)
	} else {
		total, err = e.copyTLS(dst, add)
	}
	if err != nil {
		return total, err
	}
	return total, dst.closeWrite()
}

func (e *end) copyPlain(dst *end, add func(int)) (int64, error) {
	var total int64
	for {
		buf, n, rerr := e.sock.readIdle()
		if n > 0 {
			w, werr := dst.write((*buf)[:n])
			putBuf(buf)
			total += int64(w)
			add(w)
			if werr != nil {
				return total, werr
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return total, nil
			}
			return total, rerr
		}
	}
}

// copyTLS reads the TLS side. A TLS read cannot be made without a buffer, so
// an idle pipe waits with a small one on the stack. When a read fills it,
// more is on its way: the rest is gathered into a pooled buffer with reads
// that do not wait, and the whole run of records goes out in one write
// instead of one (or, split across the small buffer, two) per record.
func (e *end) copyTLS(dst *end, add func(int)) (int64, error) {
	var total int64
	var small [smallSize]byte
	defer e.sock.dropReadAhead()
	for {
		n, rerr := e.tls.Read(small[:])
		p := small[:n]
		var big *[]byte
		if rerr == nil && n == len(small) && e.sock.raw != nil {
			big = getBuf()
			copy(*big, p)
			n, rerr = e.gatherTLS((*big)[:readSize], n)
			p = (*big)[:n]
		}
		if n > 0 {
			w, werr := dst.write(p)
			total += int64(w)
			add(w)
			if werr != nil {
				if big != nil {
					putBuf(big)
				}
				return total, werr
			}
		}
		if big != nil {
			putBuf(big)
		}
		if rerr != nil {
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				return total, nil
			}
			return total, rerr
		}
	}
}

// gatherTLS fills buf, which holds n bytes already, with what e.tls can
// return without waiting for the network. It returns the new length and
// the error that stopped it, nil when it stopped for want of data or room.
func (e *end) gatherTLS(buf []byte, n int) (int, error) {
	e.sock.noWait = true
	defer func() { e.sock.noWait = false }()
	for n < len(buf) {
		m, err := e.tls.Read(buf[n:])
		n += m
		if err == errWouldBlock {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
