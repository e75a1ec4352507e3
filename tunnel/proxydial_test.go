package tunnel

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testproxy"
)

func TestProxyDialer(t *testing.T) {
	backend := newEcho(t, "tcp", "127.0.0.1:0")
	for _, tc := range []struct{ kind, scheme, user, pass string }{
		{"http", "http", "", ""},
		{"http", "http", "alice", "s3cret"},
		{"socks5", "socks5", "", ""},
		{"socks5", "socks5h", "bob", "hunter2"},
	} {
		t.Run(tc.scheme+" "+tc.user, func(t *testing.T) {
			px := testproxy.Start(t, tc.kind, tc.user, tc.pass)
			u := tc.scheme + "://"
			if tc.user != "" {
				u += tc.user + ":" + tc.pass + "@"
			}
			d, err := newProxyDialer(u + px.Addr)
			if err != nil {
				t.Fatal(err)
			}
			if tc.pass != "" && strings.Contains(d.String(), tc.pass) {
				t.Fatalf("proxy description leaks the password: %s", d)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			target := backend.addr()
			if tc.kind == "socks5" { // the name goes to the proxy
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
			if px.Opened() != 1 {
				t.Fatal("the proxy did not carry the connection")
			}
			if tc.user != "" {
				bad, _ := newProxyDialer(tc.scheme + "://" + tc.user + ":wrong@" + px.Addr)
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
	px := testproxy.Start(t, testproxy.HTTP, "u", "pw")
	cfg := p.clientTunnel("localhost:" + portOf(srv.Addr()))
	cfg.Proxy = configs.Secret("http://u:pw@" + px.Addr)
	cli := start(t, cfg)
	c, err := net.Dial("tcp", cli.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, "proxied"); err != nil || got != "proxied" {
		t.Fatalf("got %q, %v", got, err)
	}
	if px.Opened() != 1 {
		t.Fatalf("proxy carried %d connections, want 1", px.Opened())
	}
	if err := cli.CheckBackend(context.Background()); err != nil {
		t.Fatalf("backend check through the proxy: %v", err)
	}
}

// TestProxyReplyBounded: a CONNECT proxy whose reply headers never end is
// given up on after 64 KiB, not read until the deadline; and a proxy URL
// that does not parse is refused without quoting its password.
func TestProxyReplyBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Read(make([]byte, 4096))
		c.Write([]byte("HTTP/1.1 200 OK\r\nX: "))
		chunk := bytes.Repeat([]byte("a"), 4096)
		for range 1024 { // 4 MiB at most
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	d, err := newProxyDialer("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.dial(ctx, "localhost:443")
	if err == nil {
		c.Close()
		t.Fatal("an endless reply was accepted")
	}
	if isTimeout(err) {
		t.Fatalf("read until the deadline: %v", err)
	}
	if _, err := newProxyDialer("http://alice:s3cret@proxy:8080/%zz"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("bad proxy URL: %v", err)
	}
}
