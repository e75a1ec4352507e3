package tunnel

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are one tunnel's series. They are created and registered once per
// tunnel on a registerer that already carries the tunnel and mode labels, so
// the connection path only touches resolved counters.
type Metrics struct {
	accepts        prometheus.Counter
	acceptSuccess  prometheus.Counter
	acceptError    prometheus.Counter
	acceptTimeout  prometheus.Counter
	connOpen       prometheus.Gauge
	connTimeout    prometheus.Counter
	handshake      prometheus.Histogram
	lifetime       prometheus.Histogram
	bytesIn        prometheus.Counter // from the listener's peer towards the target
	bytesOut       prometheus.Counter // from the target back to the listener's peer
	reloads        prometheus.Counter
	reloadFailures prometheus.Counter
	reauthClosed   prometheus.Counter
	backendUp      prometheus.Gauge
	certNotAfter   prometheus.Gauge

	all []prometheus.Collector
	reg prometheus.Registerer
}

// NewMetrics creates a tunnel's series and registers them on reg (which
// carries the tunnel's labels); reg may be nil.
func NewMetrics(reg prometheus.Registerer, prefix string) (*Metrics, error) {
	if prefix == "" {
		prefix = "ghostunnel"
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: prefix, Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: prefix, Name: name, Help: help})
	}
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: prefix, Name: "bytes_total",
		Help: "Bytes proxied; direction in is from the listener's peer to the target, out is back.",
	}, []string{"direction"})
	m := &Metrics{
		accepts:       counter("accept_total", "Connections accepted on the listener."),
		acceptSuccess: counter("accept_success_total", "Connections that completed the handshake and reached the target."),
		acceptError:   counter("accept_error_total", "Connections that failed the handshake, access control or the backend dial."),
		acceptTimeout: counter("accept_timeout_total", "Connections whose handshake or backend dial timed out."),
		connOpen:      gauge("conn_open", "Connections currently open (handshake done, target connected)."),
		connTimeout:   counter("conn_timeout_total", "Open connections closed by the close timeout or the maximum lifetime."),
		handshake: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: prefix, Name: "conn_handshake_seconds",
			Help:    "Time to complete the TLS handshake (and, in client mode, the dial).",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16),
		}),
		lifetime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: prefix, Name: "conn_lifetime_seconds",
			Help:    "Lifetime of proxied connections.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
		}),
		bytesIn:        bytes.WithLabelValues("in"),
		bytesOut:       bytes.WithLabelValues("out"),
		reloads:        counter("reload_total", "Successful credential reloads."),
		reloadFailures: counter("reload_failures_total", "Failed credential reloads (the old credentials stay)."),
		reauthClosed:   counter("conn_reauthorize_closed_total", "Open connections closed because a reload's new access rules refuse their peer (reauthorize: true)."),
		backendUp:      gauge("backend_up", "1 when the last backend health check passed, 0 when it failed."),
		certNotAfter:   gauge("cert_not_after_seconds", "Expiry of the tunnel's current certificate, as a Unix timestamp."),
		reg:            reg,
	}
	m.all = []prometheus.Collector{m.accepts, m.acceptSuccess, m.acceptError, m.acceptTimeout,
		m.connOpen, m.connTimeout, m.handshake, m.lifetime, bytes, m.reloads, m.reloadFailures,
		m.reauthClosed, m.backendUp, m.certNotAfter}
	if reg != nil {
		for i, c := range m.all {
			if err := reg.Register(c); err != nil {
				for _, r := range m.all[:i] {
					reg.Unregister(r)
				}
				return nil, err
			}
		}
	}
	return m, nil
}

// Unregister removes the tunnel's series, when the tunnel goes away.
func (m *Metrics) Unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.all {
		m.reg.Unregister(c)
	}
}

// ReloadFailures counts failed reloads (for tests and fleet summaries).
func (m *Metrics) ReloadFailures() prometheus.Counter { return m.reloadFailures }

// ConnOpen, BytesIn and BytesOut expose series for tests and summaries.
func (m *Metrics) ConnOpen() prometheus.Gauge   { return m.connOpen }
func (m *Metrics) BytesIn() prometheus.Counter  { return m.bytesIn }
func (m *Metrics) BytesOut() prometheus.Counter { return m.bytesOut }
