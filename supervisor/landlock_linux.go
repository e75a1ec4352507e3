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

// restrictPaths applies the filesystem rules to every thread of the
// process, best effort up to ABI V5 (file reads, writes, directory
// changes, truncation and device ioctls).
func restrictPaths(p sandboxPaths) error {
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
	return landlock.V5.BestEffort().RestrictPaths(rules...)
}
