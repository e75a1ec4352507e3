//go:build !noopa

package configs

// hasOPA says whether this build evaluates OPA policies.
const hasOPA = true
