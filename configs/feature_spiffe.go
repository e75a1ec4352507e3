//go:build !nospiffe

package configs

import "github.com/spiffe/go-spiffe/v2/workloadapi"

// hasSPIFFE says whether this build has the SPIFFE Workload API client.
const hasSPIFFE = true

func validateWorkloadAddr(addr string) error { return workloadapi.ValidateAddress(addr) }
