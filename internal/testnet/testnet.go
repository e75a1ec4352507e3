// Package testnet holds the small network helpers the tests of several
// packages share: a round trip through an echoing path, and an output
// buffer a process or logger writes while the test reads it.
package testnet

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// RoundTrip writes msg on c and reads len(msg) bytes back, all within
// timeout. It reads c directly (no buffering that could take bytes past the
// reply).
func RoundTrip(c net.Conn, msg string, timeout time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return string(buf[:n]), err
}

// Echo is RoundTrip that also fails when what came back is not msg.
func Echo(c net.Conn, msg string, timeout time.Duration) error {
	got, err := RoundTrip(c, msg, timeout)
	if err != nil {
		return err
	}
	if got != msg {
		return fmt.Errorf("echo mismatch: got %q, want %q", got, msg)
	}
	return nil
}

// Buffer is a bytes.Buffer that one goroutine (a process's output copier,
// a logger) writes while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Send dials addr, writes b, half-closes (so the server sees the end of
// the input rather than waiting for a timeout) and reads until the server
// ends the connection, within timeout: what a client sending garbage goes
// through. Only a failed dial is an error; how the server ends it (close,
// reset, or not before the timeout) is for the caller to check elsewhere.
func Send(addr string, b []byte, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	c.Write(b)
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, c)
	return nil
}
