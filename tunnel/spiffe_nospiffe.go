//go:build nospiffe

package tunnel

import "errors"

// errNoSPIFFE is what use-workload-api meets in a build without go-spiffe.
var errNoSPIFFE = errors.New("this build has no SPIFFE Workload API support (built with -tags nospiffe)")

func defaultWorkloadAddr() (string, bool) { return "", false }

func validateWorkloadAddr(string) error { return errNoSPIFFE }

func startWorkloadSource(string) (*workloadSource, error) { return nil, errNoSPIFFE }
