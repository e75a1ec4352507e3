package tunnel

import (
	"syscall"
	"unsafe"
)

// soReusePort is SO_REUSEPORT, which the syscall package does not name on
// Linux.
const soReusePort = 0xf

// rawRead and rawWrite are read(2) and write(2) on a non-blocking socket,
// made without telling the scheduler (no entersyscall/exitsyscall): they
// return at once, data or EAGAIN. The scheduler's bookkeeping for a system
// call is not only bookkeeping: when the process was idle, its first
// system call wakes the sysmon thread, which then polls every 20 µs for a
// while. A proxy handling a message after each idle spell paid that wake-up
// (two context switches on a busy CPU) on every message.
func rawRead(fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

func rawWrite(fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}
