package tunnel

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// proxyDialer reaches a client tunnel's target through an HTTP CONNECT or
// SOCKS5 proxy, as upstream's --proxy does. Credentials come from the URL.
type proxyDialer struct {
	u *url.URL
}

func newProxyDialer(raw string) (*proxyDialer, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// Not err itself: url.Error quotes the URL, password included.
		return nil, errors.New("proxy URL: not a valid URL")
	}
	switch u.Scheme {
	case "http", "socks5", "socks5h":
	default:
		return nil, fmt.Errorf("proxy URL: scheme %q: want http, socks5 or socks5h", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("proxy URL: no host")
	}
	if u.Port() == "" {
		port := "1080"
		if u.Scheme == "http" {
			port = "8080"
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	return &proxyDialer{u: u}, nil
}

// String hides the credentials.
func (p *proxyDialer) String() string { return p.u.Redacted() }

// dial connects to addr (HOST:PORT) through the proxy by deadline.
func (p *proxyDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", p.u.Host)
	if err != nil {
		return nil, fmt.Errorf("dial proxy %s: %w", p.u.Redacted(), err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if p.u.Scheme == "http" {
		err = p.connect(c, addr)
	} else {
		err = p.socks5(c, addr)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("proxy %s: %w", p.u.Redacted(), err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func (p *proxyDialer) connect(c net.Conn, addr string) error {
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: addr},
		Host:   addr,
		Header: make(http.Header),
	}
	if p.u.User != nil {
		pass, _ := p.u.User.Password()
		cred := base64.StdEncoding.EncodeToString([]byte(p.u.User.Username() + ":" + pass))
		req.Header.Set("Proxy-Authorization", "Basic "+cred)
	}
	if err := req.Write(c); err != nil {
		return err
	}
	// The reader must not read past the response: the TLS handshake
	// follows on the same connection. A one-byte buffer keeps it exact.
	// Bounded, as net/http bounds response headers: a proxy that never
	// ends its header block cannot make us buffer without end.
	br := bufio.NewReaderSize(io.LimitReader(&oneByteReader{c}, 64<<10), 16)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return fmt.Errorf("reading CONNECT response: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("CONNECT %s: %s", addr, resp.Status)
	}
	if br.Buffered() > 0 {
		return errors.New("proxy sent data before the tunnel was established")
	}
	return nil
}

// oneByteReader reads a byte at a time, so nothing after the CONNECT
// response is consumed.
type oneByteReader struct{ r io.Reader }

func (o *oneByteReader) Read(b []byte) (int, error) {
	if len(b) > 1 {
		b = b[:1]
	}
	return o.r.Read(b)
}

// socks5 speaks RFC 1928 with no authentication or RFC 1929
// username/password. socks5 resolves names locally, socks5h at the proxy.
func (p *proxyDialer) socks5(c net.Conn, addr string) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("bad port in %q", addr)
	}
	methods := []byte{0x00}
	if p.u.User != nil {
		methods = []byte{0x02}
	}
	if _, err := c.Write(append([]byte{5, byte(len(methods))}, methods...)); err != nil {
		return err
	}
	var rep [2]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		return err
	}
	if rep[0] != 5 {
		return errors.New("not a SOCKS5 proxy")
	}
	switch rep[1] {
	case 0x00:
	case 0x02:
		if p.u.User == nil {
			return errors.New("SOCKS5 proxy wants a username and password")
		}
		user := p.u.User.Username()
		pass, _ := p.u.User.Password()
		if len(user) > 255 || len(pass) > 255 {
			return errors.New("SOCKS5 username or password too long")
		}
		msg := append([]byte{1, byte(len(user))}, user...)
		msg = append(append(msg, byte(len(pass))), pass...)
		if _, err := c.Write(msg); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, rep[:]); err != nil {
			return err
		}
		if rep[1] != 0 {
			return errors.New("SOCKS5 authentication failed")
		}
	default:
		return errors.New("SOCKS5 proxy accepts none of our authentication methods")
	}
	// A name goes to the proxy to resolve, with socks5:// as with
	// socks5h://, as upstream's (golang.org/x/net/proxy) does: the target
	// may only resolve on the proxy's side, and a local lookup would not
	// be bounded by the connect deadline.
	req := []byte{5, 1, 0}
	ip := net.ParseIP(host)
	switch {
	case ip != nil && ip.To4() != nil:
		req = append(append(req, 1), ip.To4()...)
	case ip != nil:
		req = append(append(req, 4), ip.To16()...)
	default:
		if len(host) > 255 {
			return errors.New("host name too long for SOCKS5")
		}
		req = append(append(req, 3, byte(len(host))), host...)
	}
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	if _, err := c.Write(req); err != nil {
		return err
	}
	var head [4]byte
	if _, err := io.ReadFull(c, head[:]); err != nil {
		return err
	}
	if head[1] != 0 {
		return fmt.Errorf("SOCKS5 connect to %s failed (reply %d)", addr, head[1])
	}
	var skip int
	switch head[3] {
	case 1:
		skip = 4
	case 4:
		skip = 16
	case 3:
		var l [1]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return err
		}
		skip = int(l[0])
	default:
		return errors.New("SOCKS5 reply with an unknown address type")
	}
	_, err = io.ReadFull(c, make([]byte, skip+2))
	return err
}
