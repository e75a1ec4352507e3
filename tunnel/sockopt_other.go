//go:build !linux

package tunnel

import "syscall"

// 0xf is SO_REUSEPORT on Linux; elsewhere the BSD value.
const soReusePort = 0x200

// rawRead and rawWrite are plain read(2) and write(2) here (sockopt_linux.go
// says why Linux makes them without the scheduler's bookkeeping).
func rawRead(fd uintptr, p []byte) (int, error)  { return syscall.Read(int(fd), p) }
func rawWrite(fd uintptr, p []byte) (int, error) { return syscall.Write(int(fd), p) }
