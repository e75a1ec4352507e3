//go:build !linux

package supervisor

// landlockABI is 0: Landlock is Linux only.
func landlockABI() int { return 0 }

// restrict is never called where landlockABI is 0.
func restrict(sandboxPaths, sandboxPorts) error { return nil }
