package supervisor

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/statusd"
)

// Fingerprint is a fleet file's tunnels as key -> digest of the value, so
// that `ghostunnel validate` can tell what a reload would change without the
// running process revealing any value (storepass included).
type Fingerprint struct {
	Generation int                          `json:"generation"`
	SHA256     string                       `json:"sha256"`
	Process    map[string]string            `json:"process"`
	Tunnels    map[string]map[string]string `json:"tunnels"`
}

// FingerprintOf computes the fingerprint of cfg. Secret settings
// (storepass, pkcs11-pin, proxy) are not digested: their digest would let
// anyone who reaches the status port test guesses offline. They show as
// secretSet or are left out, and are not compared by CompareFingerprints.
func FingerprintOf(cfg *configs.Config) Fingerprint { return fingerprint(cfg, false) }

// secretSet stands for a secret setting that has a value.
const secretSet = "(secret)"

// fingerprint is FingerprintOf; with secrets, secret values are compared
// too (only ever in process, never served).
func fingerprint(cfg *configs.Config, secrets bool) Fingerprint {
	fp := Fingerprint{Process: keyDigests(*cfg, secrets), Tunnels: make(map[string]map[string]string)}
	for _, t := range cfg.Tunnels {
		fp.Tunnels[t.Name] = keyDigests(t, secrets)
	}
	return fp
}

func keyDigests(v any, secrets bool) map[string]string {
	rv := reflect.ValueOf(v)
	out := make(map[string]string)
	for i := 0; i < rv.NumField(); i++ {
		tag := strings.Split(rv.Type().Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" || tag == "tunnels" {
			continue
		}
		f := rv.Field(i).Interface()
		if s, ok := f.(configs.Secret); ok {
			switch {
			case s == "":
				continue
			case !secrets:
				out[tag] = secretSet
				continue
			}
			f = s.Reveal()
		} else if str, ok := f.(string); ok && !secrets {
			// A URL (metrics-url, target-status) may carry a password:
			// the served digest must not let anyone test guesses of it.
			f = withoutURLPassword(str)
		}
		sum := sha256.Sum256(fmt.Appendf(nil, "%#v", f))
		out[tag] = hex.EncodeToString(sum[:8])
	}
	return out
}

// CompareFingerprints lists, by tunnel name, what applying want over have
// would do, and the process-wide keys that would need a restart.
func CompareFingerprints(have, want Fingerprint) (changes []Change, restart []string) {
	for name, keys := range want.Tunnels {
		old, ok := have.Tunnels[name]
		if !ok {
			changes = append(changes, Change{Name: name, Kind: "added"})
			continue
		}
		var diff []string
		for k, v := range keys {
			if old[k] != v && old[k] != secretSet && v != secretSet {
				diff = append(diff, k)
			}
		}
		for k := range old {
			if _, ok := keys[k]; !ok && old[k] != secretSet {
				diff = append(diff, k)
			}
		}
		sort.Strings(diff)
		switch {
		case len(diff) == 0:
			changes = append(changes, Change{Name: name, Kind: "unchanged"})
		case old["mode"] != keys["mode"] || old["listen"] != keys["listen"]:
			changes = append(changes, Change{Name: name, Kind: "replaced", Keys: diff})
		default:
			changes = append(changes, Change{Name: name, Kind: "changed", Keys: diff})
		}
	}
	for name := range have.Tunnels {
		if _, ok := want.Tunnels[name]; !ok {
			changes = append(changes, Change{Name: name, Kind: "removed"})
		}
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Name < changes[j].Name })
	for k, v := range want.Process {
		if have.Process[k] != v && !liveProcessKeys[k] {
			restart = append(restart, k)
		}
	}
	sort.Strings(restart)
	return changes, restart
}

// liveProcessKeys are process-wide keys a reload applies without a restart
// (reloadFile copies exactly these from the new file).
var liveProcessKeys = map[string]bool{"shutdown-timeout": true}

// serveFingerprint is GET /_config/fingerprint on the status port.
func (s *Supervisor) serveFingerprint(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	fp := FingerprintOf(s.cfg)
	fp.Generation, fp.SHA256 = s.file.generation, s.file.sha256
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(fp)
}

// FetchFingerprint asks the process serving status on addr (any --status
// form) for the fingerprint of its running fleet. Only digests travel, so
// the status certificate is not verified.
func FetchFingerprint(addr string, timeout time.Duration) (Fingerprint, error) {
	var fp Fingerprint
	network, hostport, useTLS, err := statusd.ParseAddr(addr)
	if err != nil {
		return fp, err
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, hostport)
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // digests only; see above
	}
	defer tr.CloseIdleConnections()
	scheme := "http"
	if useTLS {
		scheme = "https"
	}
	c := &http.Client{Transport: tr, Timeout: timeout}
	resp, err := c.Get(scheme + "://status/_config/fingerprint")
	if err != nil {
		return fp, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fp, fmt.Errorf("%s answered %s", addr, resp.Status)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&fp)
	return fp, err
}

// withoutURLPassword is s with the password of the URL it holds replaced by
// a marker, and s itself when it holds none.
func withoutURLPassword(s string) string {
	if !strings.Contains(s, "@") || !strings.Contains(s, "://") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	return u.Redacted()
}
