package tunnel

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Socket activation: systemd passes listening sockets as descriptors 3 and
// up, names them in LISTEN_FDNAMES (FileDescriptorName= in the .socket
// unit), and sets LISTEN_PID to the process meant to take them.
const listenFDsStart = 3

var (
	activationOnce  sync.Once
	activationFiles map[string]*os.File
	activationErr   error
)

// activated returns a listener on the socket systemd passed under name, on
// a duplicate of its descriptor: the original stays open for the life of the
// process (systemd keeps one too), so a tunnel that a reload rebuilds on the
// same socket, or a reload tried again after a failed one that had taken it,
// gets it again. Closing the listener closes only the duplicate.
func activated(name string) (net.Listener, error) {
	activationOnce.Do(func() { activationFiles, activationErr = activationSockets() })
	if activationErr != nil {
		return nil, activationErr
	}
	f, ok := activationFiles[name]
	if !ok {
		names := make([]string, 0, len(activationFiles))
		for n := range activationFiles {
			names = append(names, n)
		}
		return nil, fmt.Errorf("no socket named %q passed by systemd (have: %s)", name, strings.Join(names, ", "))
	}
	return net.FileListener(f)
}

func activationSockets() (map[string]*os.File, error) {
	pid, err := strconv.Atoi(os.Getenv("LISTEN_PID"))
	if err != nil || pid != os.Getpid() {
		return nil, fmt.Errorf("no sockets passed by systemd (LISTEN_PID is not this process)")
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n < 1 {
		return nil, fmt.Errorf("no sockets passed by systemd (LISTEN_FDS=%q)", os.Getenv("LISTEN_FDS"))
	}
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	files := make(map[string]*os.File, n)
	for i := 0; i < n; i++ {
		name := "unknown"
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		fd := listenFDsStart + i
		files[name] = os.NewFile(uintptr(fd), name)
	}
	return files, nil
}

// ListenActivated is Listen for systemd:NAME addresses, for the status
// server too.
func ListenActivated(name string) (net.Listener, error) { return activated(name) }
