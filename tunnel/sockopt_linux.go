package tunnel

// soReusePort is SO_REUSEPORT, which the syscall package does not name on
// Linux.
const soReusePort = 0xf
