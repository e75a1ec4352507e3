package supervisor

// Metrics push, as upstream's --metrics-graphite and --metrics-url: every
// metrics-interval the metrics are gathered once and sent to each endpoint.
// Failures are logged and never stop anything.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/statusd"
)

// maxPushTimeout bounds one push; a shorter interval bounds it more.
const maxPushTimeout = 10 * time.Second

// pusher sends the metrics every interval. Its settings are taken when the
// supervisor starts: a reload does not change them.
type pusher struct {
	log      log.Logger
	gatherer prometheus.Gatherer
	prefix   string
	hostname string
	// single is a one-tunnel command line: Graphite names are upstream's,
	// without the tunnel segment.
	single   bool
	graphite string // HOST:PORT, "" for none
	url      string // http(s) URL, "" for none
	shownURL string // url with any password hidden, for logs
	interval time.Duration
	timeout  time.Duration
	client   *http.Client
}

// newPusher returns the pusher the config asks for, nil when it asks for
// none.
func (s *Supervisor) newPusher() *pusher {
	s.mu.Lock()
	cfg := *s.cfg
	s.mu.Unlock()
	if cfg.MetricsGraphite == "" && cfg.MetricsURL == "" {
		return nil
	}
	interval := cfg.MetricsInterval.D()
	if interval <= 0 {
		interval = configs.DefaultMetricsInterval
	}
	prefix := cfg.MetricsPrefix
	if prefix == "" {
		prefix = configs.DefaultMetricsPrefix
	}
	hostname, _ := os.Hostname()
	p := &pusher{
		log:      s.log,
		gatherer: s.reg,
		prefix:   prefix,
		hostname: hostname,
		single:   cfg.Path == "" && len(cfg.Tunnels) == 1,
		graphite: cfg.MetricsGraphite,
		url:      cfg.MetricsURL,
		shownURL: cfg.MetricsURL,
		interval: interval,
		timeout:  min(interval, maxPushTimeout),
	}
	if u, err := url.Parse(cfg.MetricsURL); err == nil {
		p.shownURL = u.Redacted()
	}
	if p.url != "" {
		p.client = p.httpClient(cfg)
	}
	return p
}

// httpClient is the client of metrics-url: TLS 1.2 or later, verifying the
// server against the system roots plus the first tunnel's cacert, if any.
func (p *pusher) httpClient(cfg configs.Config) *http.Client {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if len(cfg.Tunnels) > 0 && cfg.Tunnels[0].CACert != "" {
		pem, err := os.ReadFile(cfg.Tunnels[0].CACert)
		if err == nil && !roots.AppendCertsFromPEM(pem) {
			err = fmt.Errorf("no certificates in %s", cfg.Tunnels[0].CACert)
		}
		if err != nil {
			p.log.Log("level", "warn", "msg", "metrics: using the system roots only", "err", err)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	return &http.Client{Transport: tr}
}

// actor is the run.Group actor pushing until interrupted.
func (p *pusher) actor() (func() error, func(error)) {
	ctx, cancel := context.WithCancel(context.Background())
	return func() error {
		p.run(ctx)
		return nil
	}, func(error) { cancel() }
}

// run pushes every interval until ctx ends; a push in flight is cut short.
func (p *pusher) run(ctx context.Context) {
	if p.graphite != "" {
		p.log.Log("msg", "metrics enabled; reporting metrics via TCP to "+p.graphite, "interval", p.interval)
	}
	if p.url != "" {
		p.log.Log("msg", "metrics enabled; reporting metrics via POST to "+p.shownURL, "interval", p.interval)
	}
	if p.client != nil {
		defer p.client.CloseIdleConnections()
	}
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			p.push(ctx)
		}
	}
}

// push gathers the metrics once and sends them to every endpoint at once,
// each within the push timeout.
func (p *pusher) push(ctx context.Context) {
	points, err := statusd.GatherPoints(p.gatherer, p.prefix, p.hostname)
	if err != nil {
		// What could be gathered is still sent.
		p.log.Log("level", "warn", "msg", "gathering metrics", "err", err)
	}
	var wg sync.WaitGroup
	if p.graphite != "" {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, p.timeout)
			defer cancel()
			if err := p.sendGraphite(ctx, graphiteLines(points, p.prefix, p.single)); err != nil {
				p.log.Log("level", "warn", "msg", "error sending metrics", "to", p.graphite, "err", err)
			}
		})
	}
	if p.url != "" {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, p.timeout)
			defer cancel()
			if err := p.post(ctx, points); err != nil {
				p.log.Log("level", "warn", "msg", "error sending metrics", "to", p.shownURL, "err", err)
			}
		})
	}
	wg.Wait()
}

// sendGraphite writes body over a new TCP connection and closes it.
func (p *pusher) sendGraphite(ctx context.Context, body []byte) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", p.graphite)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write(body); err != nil {
		return err
	}
	return c.Close()
}

// post sends the JSON metrics list, as GET /_metrics serves it.
func (p *pusher) post(ctx context.Context, points []statusd.MetricPoint) error {
	body, err := json.Marshal(points)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("unexpected response: %s", resp.Status)
	}
	return nil
}

// graphiteLines renders points in the Graphite plaintext protocol, one
// "name value timestamp" line each. Names are the JSON list's, with the
// tunnel inserted after the prefix (dots in its name written as _) unless
// single is set.
func graphiteLines(points []statusd.MetricPoint, prefix string, single bool) []byte {
	var b bytes.Buffer
	for _, pt := range points {
		name := pt.Metric
		if !single {
			rest, _ := strings.CutPrefix(name, prefix+".")
			name = prefix + "." + strings.ReplaceAll(pt.Tunnel, ".", "_") + "." + rest
		}
		b.WriteString(strings.Map(graphiteRune, name))
		b.WriteByte(' ')
		// MetricPoint.Value is a float64 that JSON writes as an integer
		// when it is integral; 'f' does the same here.
		b.WriteString(strconv.FormatFloat(float64(pt.Value), 'f', -1, 64))
		b.WriteByte(' ')
		b.WriteString(strconv.FormatInt(pt.Timestamp, 10))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// graphiteRune keeps a metric name on one field of its line.
func graphiteRune(r rune) rune {
	if unicode.IsSpace(r) || unicode.IsControl(r) {
		return '_'
	}
	return r
}
