// Package testproxy is a small HTTP CONNECT or SOCKS5 proxy for tests,
// counting the tunnels it opened.
package testproxy

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Kinds of proxy.
const (
	HTTP   = "http"
	SOCKS5 = "socks5"
)

// Proxy is a running proxy.
type Proxy struct {
	// Addr is the proxy's 127.0.0.1:PORT.
	Addr   string
	ln     net.Listener
	opened atomic.Int32

	mu      sync.Mutex
	targets []string
}

// Start runs a proxy of kind (HTTP or SOCKS5) until the test ends. A
// non-empty user makes it require user and pass.
func Start(t testing.TB, kind, user, pass string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), ln: ln}
	var wg sync.WaitGroup
	var cmu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		cmu.Lock()
		conns = append(conns, c)
		cmu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				var target string
				if kind == HTTP {
					target = httpConnect(c, user, pass)
				} else {
					target = socks5Accept(c, user, pass)
				}
				if target == "" {
					return
				}
				up, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					return
				}
				track(up)
				defer up.Close()
				c.SetDeadline(time.Time{})
				p.mu.Lock()
				p.targets = append(p.targets, target)
				p.mu.Unlock()
				p.opened.Add(1)
				done := make(chan struct{})
				go func() {
					defer close(done)
					io.Copy(up, c)
					up.(*net.TCPConn).CloseWrite()
				}()
				io.Copy(c, up)
				c.(*net.TCPConn).CloseWrite()
				<-done
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cmu.Lock()
		for _, c := range conns {
			c.Close()
		}
		cmu.Unlock()
		wg.Wait()
	})
	return p
}

// Opened is how many tunnels the proxy opened to a target.
func (p *Proxy) Opened() int { return int(p.opened.Load()) }

// Targets are the targets of the tunnels opened, in order.
func (p *Proxy) Targets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...)
}

// oneByteReader reads a byte at a time, so nothing after the CONNECT
// request is buffered away from the tunnel.
type oneByteReader struct{ r io.Reader }

func (o *oneByteReader) Read(b []byte) (int, error) {
	if len(b) > 1 {
		b = b[:1]
	}
	return o.r.Read(b)
}

func httpConnect(c net.Conn, user, pass string) string {
	req, err := http.ReadRequest(bufio.NewReader(&oneByteReader{c}))
	if err != nil || req.Method != http.MethodConnect {
		return ""
	}
	if user != "" {
		u, p, ok := (&http.Request{Header: http.Header{"Authorization": req.Header["Proxy-Authorization"]}}).BasicAuth()
		if !ok || u != user || p != pass {
			io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
			return ""
		}
	}
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	return req.Host
}

func socks5Accept(c net.Conn, user, pass string) string {
	var h [2]byte
	if _, err := io.ReadFull(c, h[:]); err != nil || h[0] != 5 {
		return ""
	}
	io.ReadFull(c, make([]byte, h[1]))
	if user == "" {
		c.Write([]byte{5, 0})
	} else {
		c.Write([]byte{5, 2})
		var v [2]byte
		io.ReadFull(c, v[:])
		u := make([]byte, v[1])
		io.ReadFull(c, u)
		var l [1]byte
		io.ReadFull(c, l[:])
		pw := make([]byte, l[0])
		io.ReadFull(c, pw)
		if string(u) != user || string(pw) != pass {
			c.Write([]byte{1, 1})
			return ""
		}
		c.Write([]byte{1, 0})
	}
	var req [4]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return ""
	}
	var host string
	switch req[3] {
	case 1:
		b := make([]byte, 4)
		io.ReadFull(c, b)
		host = net.IP(b).String()
	case 3:
		var l [1]byte
		io.ReadFull(c, l[:])
		b := make([]byte, l[0])
		io.ReadFull(c, b)
		host = string(b)
	default:
		return ""
	}
	var pb [2]byte
	io.ReadFull(c, pb[:])
	c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(pb[:]))))
}
