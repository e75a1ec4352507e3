//go:build !linux

package tunnel

// 0xf is SO_REUSEPORT on Linux; elsewhere the BSD value.
const soReusePort = 0x200
