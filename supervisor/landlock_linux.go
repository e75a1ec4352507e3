//go:build linux

package supervisor

import (
	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// landlockABI is the Landlock ABI version of the running kernel, 0 when it
// has none (not built in, or not enabled in the lsm= list).
func landlockABI() int {
	v, err := llsys.LandlockGetABIVersion()
	if err != nil || v < 1 {
		return 0
	}
	return v
}

// restrict applies the filesystem and TCP rules to every thread of the
// process, best effort up to ABI V5: file reads, writes, directory changes,
// truncation and device ioctls, and (ABI 4 and later) TCP bind and connect
// by port. Kernels without ABI 4 get the filesystem rules only.
func restrict(p sandboxPaths, n sandboxPorts) error {
	var rules []landlock.Rule
	if len(p.roDirs) > 0 {
		rules = append(rules, landlock.RODirs(p.roDirs...).IgnoreIfMissing())
	}
	if len(p.roFiles) > 0 {
		rules = append(rules, landlock.ROFiles(p.roFiles...).IgnoreIfMissing())
	}
	if len(p.rwDirs) > 0 {
		rules = append(rules, landlock.RWDirs(p.rwDirs...).IgnoreIfMissing())
	}
	if len(p.rwFiles) > 0 {
		rules = append(rules, landlock.RWFiles(p.rwFiles...).IgnoreIfMissing())
	}
	for _, port := range n.bind {
		rules = append(rules, landlock.BindTCP(port))
	}
	for _, port := range n.connect {
		rules = append(rules, landlock.ConnectTCP(port))
	}
	return landlock.V5.BestEffort().Restrict(rules...)
}
