package tunnel

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"time"
)

// testProxy is a small HTTP CONNECT or SOCKS5 proxy for tests. It counts
// the tunnels it opened.
type testProxy struct {
	ln     net.Listener
	opened atomic.Int32
}

func newTestProxy(t *testing.T, kind, user, pass string) *testProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &testProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				var target string
				if kind == "http" {
					target = httpConnect(c, user, pass)
				} else {
					target = socks5Accept(c, user, pass)
				}
				if target == "" {
					return
				}
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				c.SetDeadline(time.Time{})
				p.opened.Add(1)
				go func() {
					io.Copy(up, c)
					up.(*net.TCPConn).CloseWrite()
				}()
				io.Copy(c, up)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return p
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

func TestProxyDialer(t *testing.T) {
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	for _, tc := range []struct{ kind, scheme, user, pass string }{
		{"http", "http", "", ""},
		{"http", "http", "alice", "s3cret"},
		{"socks5", "socks5", "", ""},
		{"socks5", "socks5h", "bob", "hunter2"},
	} {
		t.Run(tc.scheme+" "+tc.user, func(t *testing.T) {
			px := newTestProxy(t, tc.kind, tc.user, tc.pass)
			u := tc.scheme + "://"
			if tc.user != "" {
				u += tc.user + ":" + tc.pass + "@"
			}
			d, err := newProxyDialer(u + px.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			if tc.pass != "" && strings.Contains(d.String(), tc.pass) {
				t.Fatalf("proxy description leaks the password: %s", d)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			target := backend.addr()
			if tc.scheme == "socks5h" {
				target = "localhost:" + strings.Split(target, ":")[1]
			}
			c, err := d.dial(ctx, target)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got, err := roundTrip(c, "via proxy"); err != nil || got != "via proxy" {
				t.Fatalf("got %q, %v", got, err)
			}
			if px.opened.Load() != 1 {
				t.Fatal("the proxy did not carry the connection")
			}
			if tc.user != "" {
				bad, _ := newProxyDialer(tc.scheme + "://" + tc.user + ":wrong@" + px.ln.Addr().String())
				if c, err := bad.dial(ctx, target); err == nil {
					c.Close()
					t.Fatal("wrong proxy password accepted")
				} else if strings.Contains(err.Error(), "wrong") {
					t.Fatalf("error leaks the password: %v", err)
				}
			}
		})
	}
	if _, err := newProxyDialer("ftp://x:1"); err == nil {
		t.Fatal("ftp proxy accepted")
	}
}

// TestClientTunnelThroughProxy: a client tunnel with proxy: set reaches its
// server tunnel only through the proxy.
func TestClientTunnelThroughProxy(t *testing.T) {
	p := newPKI(t)
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	srv := start(t, p.serverTunnel(backend.addr()))
	px := newTestProxy(t, "http", "u", "pw")
	cfg := p.clientTunnel("localhost:" + portOf(srv.Addr()))
	cfg.Proxy = configs.Secret("http://u:pw@" + px.ln.Addr().String())
	cli := start(t, cfg)
	c, err := net.Dial("tcp", cli.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, "proxied"); err != nil || got != "proxied" {
		t.Fatalf("got %q, %v", got, err)
	}
	if px.opened.Load() != 1 {
		t.Fatalf("proxy carried %d connections, want 1", px.opened.Load())
	}
	if err := cli.CheckBackend(context.Background()); err != nil {
		t.Fatalf("backend check through the proxy: %v", err)
	}
}
