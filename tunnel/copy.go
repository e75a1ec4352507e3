package tunnel

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Buffer sizes. A streaming read takes up to readSize bytes, which a TLS
// writer turns into 32 full records; a big buffer has room for the framing
// of those records too, so one size serves reads and coalesced writes. On
// loopback, where the kernel's per-call, per-segment and per-wakeup work
// dominates, the two proxies spend about 0.3 s of CPU per GiB less with
// 512 KiB reads and writes than with 64 KiB ones (docs/PERFORMANCE.md).
// Envoy's default per-connection buffer limit (1 MiB) is of the same order.
//
// A socket reads with a small buffer until a read fills one, and goes back
// to small ones when a read returns less than a small one holds: messages
// then never touch the big buffers, which sync.Pool drops at every garbage
// collection and which are costly to allocate again. Buffers are held only
// while data moves: an idle connection holds none, a streaming one at most
// two big ones per direction.
const (
	readSize  = 512 << 10
	bufSize   = readSize + 8<<10
	smallSize = 16 << 10
	// maxRecord is the most plaintext one TLS record carries.
	maxRecord = 16 << 10
	// recordHeaderLen is the size of a TLS record header: type, version,
	// length.
	recordHeaderLen = 5
)

var (
	bigPool   = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallSize); return &b }}
)

// getBuf returns a pooled buffer of bufSize bytes, or smallSize ones.
func getBuf(big bool) *[]byte {
	if big {
		return bigPool.Get().(*[]byte)
	}
	return smallPool.Get().(*[]byte)
}

func putBuf(b *[]byte) {
	if len(*b) == bufSize {
		bigPool.Put(b)
	} else {
		smallPool.Put(b)
	}
}

// readLen is how much of b a read fills: readSize of a big buffer (the
// rest is room for TLS framing), all of a small one.
func readLen(b *[]byte) []byte { return (*b)[:min(len(*b), readSize)] }

// sock is a plaintext socket: the backend or client side of a pipe in the
// clear, or the transport under a tls.Conn. It adds three things to
// net.Conn:
//
//   - readIdle waits for data without holding a buffer, so an idle
//     connection pins no copy buffer;
//   - under a tls.Conn, once the handshake is done, fill and Read split a
//     read in two: fill waits (without a buffer) and reads the socket into
//     a read-ahead buffer, Read hands it to the tls.Conn a record at a time
//     and never waits, so the copy loop knows when the tls.Conn holds
//     nothing more and never blocks in crypto/tls holding a buffer;
//   - coalescing: while a large tls.Conn.Write runs, its records are gathered
//     and sent with one write system call instead of one per record.
type sock struct {
	net.Conn
	raw syscall.RawConn // nil when the conn has no file descriptor

	// Read state, used only by the one goroutine reading the socket (the
	// handshake, then the copy loop).
	rbuf   *[]byte
	rn     int
	rerr   error
	readFn func(fd uintptr) bool
	// streaming: the last read filled a small buffer, so read big ones.
	streaming bool
	// afterHandshake switches Read from reading the socket to serving ra.
	afterHandshake bool
	// ra is what fill read and Read has not yet served: (*ra)[raOff:raEnd];
	// nil when empty.
	ra           *[]byte
	raOff, raEnd int
	// raErr is the error fill met, for Read to return once ra is empty.
	raErr error
	// rec follows the TLS record framing of everything read so far.
	rec records

	mu       sync.Mutex // guards the write side
	gather   bool
	wbuf     *[]byte
	wpending []byte
	// send's state for tryWrite: what to write, how much is written, the
	// error that stopped it; writeFn is tryWrite, bound once.
	wb      []byte
	wn      int
	werr    error
	writeFn func(fd uintptr) bool
}

// newSock wraps c. When c offers its file descriptor (syscall.Conn), reads
// go to the descriptor directly, so such a conn must not buffer reads of its
// own (the proxy dialer reads its CONNECT reply byte by byte for this).
func newSock(c net.Conn) *sock {
	s := &sock{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			s.raw = raw
			s.readFn, s.writeFn = s.tryRead, s.tryWrite
		}
	}
	return s
}

// tryRead is the RawConn callback: it takes a buffer only for the moment of
// the read system call and gives it back when there is nothing to read, so
// the goroutine then parks in the poller without one.
func (s *sock) tryRead(fd uintptr) bool {
	if s.rbuf == nil {
		s.rbuf = getBuf(s.streaming)
	}
	for {
		n, err := rawRead(fd, readLen(s.rbuf))
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

// tryWrite is the RawConn callback of send: it writes what is left of wb,
// and asks to wait for the socket to drain when the buffer is full.
func (s *sock) tryWrite(fd uintptr) bool {
	for s.wn < len(s.wb) {
		m, err := rawWrite(fd, s.wb[s.wn:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			s.werr = err
			return true
		}
		s.wn += m
	}
	return true
}

// readIdle returns a pooled buffer holding what was read; the caller returns
// it with putBuf. The buffer is nil when n is 0.
func (s *sock) readIdle() (buf *[]byte, n int, err error) {
	if s.raw == nil {
		buf = getBuf(s.streaming)
		n, err = s.Conn.Read(readLen(buf))
	} else {
		s.rn, s.rerr = 0, nil
		if rerr := s.raw.Read(s.readFn); rerr != nil {
			s.rn, s.rerr = 0, mapNetErr(rerr)
		}
		buf, s.rbuf = s.rbuf, nil
		n, err = s.rn, s.rerr
	}
	if n == 0 {
		if buf != nil {
			putBuf(buf)
		}
		return nil, 0, err
	}
	switch {
	case !s.streaming && n == smallSize:
		s.streaming = true
	case s.streaming && n < smallSize:
		s.streaming = false
	}
	return buf, n, err
}

// mapNetErr makes RawConn errors look like the ones net.Conn.Read returns.
func mapNetErr(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return net.ErrClosed
	}
	return err
}

// errWouldBlock is what Read returns after the handshake when fill has
// nothing for it. crypto/tls treats a temporary net.Error from its
// transport as it treats a read deadline: the record layer keeps what it
// has and the next Read carries on, so the tls.Conn stays usable.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tls transport: no data read ahead" }
func (wouldBlock) Timeout() bool   { return false }
func (wouldBlock) Temporary() bool { return true }

// Read is how a tls.Conn reads its transport. During the handshake it reads
// the socket. After it, it serves what fill read ahead, never beyond the end
// of the current record, so that the tls.Conn, which decrypts each record as
// soon as it has all of it, never holds an undecrypted whole record: once a
// tls.Conn.Read has drained its plaintext and ra is empty, nothing is
// pending short of the network. One large read then feeds many records,
// where the tls.Conn on its own reads about two records per system call.
func (s *sock) Read(p []byte) (int, error) {
	if !s.afterHandshake {
		n, err := s.Conn.Read(p)
		s.rec.skip(p[:n])
		return n, err
	}
	if s.ra == nil {
		if s.raErr != nil {
			return 0, s.raErr
		}
		return 0, errWouldBlock
	}
	src := (*s.ra)[s.raOff:s.raEnd]
	n := copy(p, src[:s.rec.span(src[:min(len(src), len(p))])])
	s.raOff += n
	if s.raOff == s.raEnd {
		putBuf(s.ra)
		s.ra = nil
	}
	return n, nil
}

// fill waits, holding no buffer, until the socket has data, and reads it
// ahead for Read. An error is kept for Read to return once ra is drained.
// It returns at once when ra holds data or an error is already kept.
func (s *sock) fill() {
	if s.ra != nil || s.raErr != nil {
		return
	}
	buf, n, err := s.readIdle()
	if n > 0 {
		s.ra, s.raOff, s.raEnd = buf, 0, n
	}
	s.raErr = err
}

// dropReadAhead returns the read-ahead buffer once nothing will read on.
func (s *sock) dropReadAhead() {
	if s.ra != nil {
		putBuf(s.ra)
		s.ra = nil
	}
}

// records follows TLS record framing through a byte stream: it is either in
// a header (hdrN of its bytes seen) or in a body (left bytes to go).
type records struct {
	hdr  [recordHeaderLen]byte
	hdrN int
	left int
}

// span consumes b up to the end of the current record and returns how
// many bytes that is: all of b when the record goes on past it.
func (r *records) span(b []byte) int {
	n := 0
	for n < len(b) {
		if r.left > 0 {
			k := min(len(b)-n, r.left)
			n += k
			r.left -= k
			if r.left == 0 {
				return n
			}
			continue
		}
		r.hdr[r.hdrN] = b[n]
		r.hdrN++
		n++
		if r.hdrN == recordHeaderLen {
			r.hdrN = 0
			r.left = int(r.hdr[3])<<8 | int(r.hdr[4])
			if r.left == 0 {
				return n
			}
		}
	}
	return n
}

// skip consumes all of b.
func (r *records) skip(b []byte) {
	for len(b) > 0 {
		b = b[r.span(b):]
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
				return s.send(b)
			}
		}
		s.wpending = append(s.wpending, b...)
		return len(b), nil
	}
	return s.send(b)
}

// send writes all of b to the socket: through its descriptor when there is
// one (rawWrite, waiting in the poller while the socket buffer is full and
// keeping to the write deadline), else through the conn.
// Callers hold s.mu, which guards the write state tryWrite works on.
func (s *sock) send(b []byte) (int, error) {
	if s.raw == nil {
		return s.Conn.Write(b)
	}
	s.wb, s.wn, s.werr = b, 0, nil
	err := s.raw.Write(s.writeFn)
	n, werr := s.wn, s.werr
	s.wb, s.werr = nil, nil
	switch {
	case werr != nil:
		werr = os.NewSyscallError("write", werr)
	case err != nil:
		werr = mapNetErr(err) // a deadline, or the conn closed
	default:
		return n, nil
	}
	return n, &net.OpError{Op: "write", Net: s.LocalAddr().Network(), Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: werr}
}

func (s *sock) flushLocked() error {
	if len(s.wpending) == 0 {
		return nil
	}
	_, err := s.send(s.wpending)
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
	s.wbuf = getBuf(true)
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
// dst. Every chunk written is added to the bytes counter as it goes, so the
// metric follows long connections; a chunk is up to readSize bytes, so the
// cost is one atomic add per system call at most. It returns the bytes
// written and the error that ended the copy (nil for a clean EOF).
func (e *end) copyTo(dst *end, counter *Counter) (int64, error) {
	var total int64
	var err error
	if e.tls == nil {
		total, err = e.copyPlain(dst, counter)
	} else {
		total, err = e.copyTLS(dst, counter)
	}
	if err != nil {
		return total, err
	}
	return total, dst.closeWrite()
}

func (e *end) copyPlain(dst *end, counter *Counter) (int64, error) {
	var total int64
	for {
		buf, n, rerr := e.sock.readIdle()
		if n > 0 {
			w, werr := dst.write((*buf)[:n])
			putBuf(buf)
			total += int64(w)
			counter.Add(uint64(w))
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

// copyTLS reads the TLS side: it waits in fill, holding no buffer, then
// decrypts all that was read into one pooled buffer and writes it with one
// system call, where a plain tls.Conn.Read loop writes once per record.
func (e *end) copyTLS(dst *end, counter *Counter) (int64, error) {
	s := e.sock
	s.afterHandshake = true
	defer s.dropReadAhead()
	var total int64
	// The handshake may have left whole records in the tls.Conn, so the
	// first drain runs until the tls.Conn asks for more than it has: over
	// as many buffers as they fill.
	more, first := true, true
	for {
		if !more {
			s.fill()
		}
		// Plaintext is smaller than the ciphertext it comes from, so a
		// small buffer takes a small read whole.
		buf := getBuf(s.ra != nil && s.raEnd-s.raOff > smallSize-recordHeaderLen)
		var n int
		var rerr error
		n, more, rerr = e.drainTLS(readLen(buf), first)
		first = first && more
		if n > 0 {
			w, werr := dst.write((*buf)[:n])
			total += int64(w)
			counter.Add(uint64(w))
			if werr != nil {
				putBuf(buf)
				return total, werr
			}
		}
		putBuf(buf)
		if rerr != nil {
			// A TCP FIN at a record boundary (with or without
			// close_notify) is the peer's end of the stream.
			// io.ErrUnexpectedEOF, a FIN in the middle of a record, is
			// a truncated stream, and an error like any other.
			if rerr == io.EOF {
				return total, nil
			}
			return total, rerr
		}
	}
}

// drainTLS decrypts into b what e.tls can return without waiting. more
// reports that it stopped because b was full, and data may remain. Unless
// untilBlock, it stops when the read-ahead is used up: the tls.Conn then
// holds nothing more (see sock.Read) and asking would cost a call for
// nothing.
func (e *end) drainTLS(b []byte, untilBlock bool) (n int, more bool, err error) {
	for n < len(b) {
		var m int
		m, err = e.tls.Read(b[n:])
		n += m
		if err == errWouldBlock {
			return n, false, nil
		}
		if err != nil {
			return n, false, err
		}
		if e.sock.ra == nil && !untilBlock && n < len(b) {
			return n, false, nil
		}
	}
	return n, true, nil
}
