package tunnel

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
)

// Buffer sizes. A plaintext read takes up to readSize bytes, which a TLS
// writer turns into four full records; the pooled buffer has room for the
// framing of those records too, so one buffer serves both the read and the
// coalesced write.
const (
	readSize  = 64 << 10
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
// an idle pipe waits with a small one and moves to a pooled full-size buffer
// only while records keep arriving full.
func (e *end) copyTLS(dst *end, add func(int)) (int64, error) {
	var total int64
	var small [smallSize]byte
	var big *[]byte
	defer func() {
		if big != nil {
			putBuf(big)
		}
	}()
	for {
		b := small[:]
		if big != nil {
			b = (*big)[:maxRecord]
		}
		n, rerr := e.tls.Read(b)
		if n > 0 {
			w, werr := dst.write(b[:n])
			total += int64(w)
			add(w)
			if werr != nil {
				return total, werr
			}
		}
		switch {
		case big == nil && n == len(small):
			big = getBuf()
		case big != nil && n < maxRecord:
			putBuf(big)
			big = nil
		}
		if rerr != nil {
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				return total, nil
			}
			return total, rerr
		}
	}
}
