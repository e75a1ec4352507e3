package tunnel

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/ghostunnel-fleet/ghostunnel/internal/testnet"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// heldConn holds the server's reads of the client's second flight until
// the client has also sent its first records, so the handshake's last read
// takes application records along (as on a busy server).
type heldConn struct {
	*net.TCPConn
	wrote   bool
	release chan struct{}
	once    sync.Once
}

func (c *heldConn) Write(b []byte) (int, error) {
	c.wrote = true
	return c.TCPConn.Write(b)
}

func (c *heldConn) Read(b []byte) (int, error) {
	if c.wrote { // the server's flight is out: what comes next is the client's
		c.once.Do(func() { <-c.release })
	}
	return c.TCPConn.Read(b)
}

// TestHandshakeLeftoverRecords: records that arrived with the end of the
// handshake, and sit decrypted-pending in the tls.Conn, are forwarded at
// once, however many there are, and not only when the peer sends more.
// (With a large client certificate the handshake's buffer has room for
// more than one read-ahead buffer's worth of them.)
func TestHandshakeLeftoverRecords(t *testing.T) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	for _, sans := range []int{0, 900} {
		t.Run(fmt.Sprintf("%d SANs", sans), func(t *testing.T) {
			o := testpki.Options{CN: "big", Client: true}
			for i := range sans {
				o.DNS = append(o.DNS, fmt.Sprintf("host-%05d.example.internal", i))
			}
			cert := p.ca.Issue(fmt.Sprintf("big%d", sans), o).TLS()

			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			release := make(chan struct{})
			served := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					served <- err
					return
				}
				front := &end{sock: newSock(&heldConn{TCPConn: c.(*net.TCPConn), release: release})}
				tc := tls.Server(front.sock, &tls.Config{Certificates: []tls.Certificate{p.server.TLS()},
					ClientAuth: tls.RequireAnyClientCert})
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					served <- err
					return
				}
				tc.SetDeadline(time.Time{})
				front.tls = tc
				bc, err := net.Dial("tcp", backend.addr())
				if err != nil {
					served <- err
					return
				}
				back := &end{sock: newSock(bc)}
				var n Counter
				go func() { front.copyTo(back, &n); back.sock.Close() }()
				go func() { back.copyTo(front, &n); front.sock.Close() }()
				served <- nil
			}()

			c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost",
				Certificates: []tls.Certificate{cert}, DynamicRecordSizingDisabled: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var sent []byte
			for i, n := range []int{16383, 2, 1} { // one full record, then two small ones
				msg := make([]byte, n)
				for j := range msg {
					msg[j] = byte(i + j)
				}
				if _, err := c.Write(msg); err != nil {
					t.Fatal(err)
				}
				sent = append(sent, msg...)
			}
			time.Sleep(50 * time.Millisecond) // the records are in the server's socket
			close(release)
			if err := <-served; err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := make([]byte, len(sent))
			if n, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("echoed %d of %d bytes: %v", n, len(sent), err)
			}
			if string(got) != string(sent) {
				t.Fatal("echo differs from what was sent")
			}
		})
	}
}

// TestTruncatedRecord: a TLS stream that ends (TCP FIN) in the middle of a
// record is an error, not the client's clean end of the stream: the
// records before it are forwarded, then the connection is closed on both
// sides at once (not half-closed, as after a complete stream, with the
// backend's reply still awaited) and the error is logged.
func TestTruncatedRecord(t *testing.T) {
	p := newPKI(t)
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bln.Close()
	var logs testnet.Buffer
	tun := startWith(t, p.serverTunnel(bln.Addr().String()), Deps{Logger: log.NewLogfmtLogger(&logs)})

	raw, err := net.Dial("tcp", tun.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c := tls.Client(raw, p.clientTLS())
	if _, err := c.Write([]byte("complete record\n")); err != nil {
		t.Fatal(err)
	}
	// An application data record header announcing 100 bytes, 10 of them,
	// then the FIN.
	raw.Write(append([]byte{23, 3, 3, 0, 100}, make([]byte, 10)...))
	raw.(*net.TCPConn).CloseWrite()

	back, err := bln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	back.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, _ := io.ReadAll(back); string(got) != "complete record\n" {
		t.Fatalf("backend got %q, want the complete record", got)
	}
	// The client's side is closed too, now, not after the close timeout
	// (60 s) with the backend's answer awaited.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); isTimeout(err) {
		t.Fatal("the client's side stayed open after its stream was cut short")
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "unexpected EOF"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the truncation was not logged:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), "error during copy") {
		t.Fatalf("want an 'error during copy' line:\n%s", logs.String())
	}
}

// TestResetLogged: a backend that resets the connection is logged as
// "error during copy" with the reset, as upstream logs it.
func TestResetLogged(t *testing.T) {
	p := newPKI(t)
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bln.Close()
	go func() {
		c, err := bln.Accept()
		if err != nil {
			return
		}
		c.Read(make([]byte, 64))
		c.(*net.TCPConn).SetLinger(0) // close with a RST
		c.Close()
	}()
	var logs testnet.Buffer
	tun := startWith(t, p.serverTunnel(bln.Addr().String()), Deps{Logger: log.NewLogfmtLogger(&logs)})
	c, err := dialTLS(tun.Addr().String(), p.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	c.Read(make([]byte, 1))
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "error during copy"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no 'error during copy' for a reset:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), "reset by peer") {
		t.Fatalf("the line does not say what happened:\n%s", logs.String())
	}
}
