package tunnel

import (
	"github.com/prometheus/client_golang/prometheus"
)

// MetricFamilies are the per-tunnel series of one process: a labelled
// vector (tunnel, mode) per metric, registered once. A tunnel's Metrics are
// its children, resolved when the tunnel is created, so the connection path
// only touches resolved counters, and a tunnel costs its children alone:
// no descriptors, registrations or label wrapping of its own (a fleet of a
// thousand tunnels would otherwise hold 15,000 collectors).
type MetricFamilies struct {
	accepts        *prometheus.CounterVec
	acceptSuccess  *prometheus.CounterVec
	acceptError    *prometheus.CounterVec
	acceptTimeout  *prometheus.CounterVec
	connOpen       *prometheus.GaugeVec
	connTimeout    *prometheus.CounterVec
	handshake      *prometheus.HistogramVec
	lifetime       *prometheus.HistogramVec
	bytes          *prometheus.CounterVec // plus direction
	reloads        *prometheus.CounterVec
	reloadFailures *prometheus.CounterVec
	reauthClosed   *prometheus.CounterVec
	backendUp      *prometheus.GaugeVec
	certNotAfter   *prometheus.GaugeVec

	all []prometheus.Collector
	reg prometheus.Registerer
}

// tunnelLabels are the labels every per-tunnel series carries.
var tunnelLabels = []string{"tunnel", "mode"}

// NewMetricFamilies creates the per-tunnel metric families and registers
// them on reg; reg may be nil (series kept but not exported).
func NewMetricFamilies(reg prometheus.Registerer, prefix string) (*MetricFamilies, error) {
	if prefix == "" {
		prefix = "ghostunnel"
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: prefix, Name: name, Help: help}, tunnelLabels)
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: prefix, Name: name, Help: help}, tunnelLabels)
	}
	f := &MetricFamilies{
		accepts:       counter("accept_total", "Connections accepted on the listener."),
		acceptSuccess: counter("accept_success_total", "Connections that completed the handshake and reached the target."),
		acceptError:   counter("accept_error_total", "Connections that failed the handshake, access control or the backend dial."),
		acceptTimeout: counter("accept_timeout_total", "Connections whose handshake or backend dial timed out."),
		connOpen:      gauge("conn_open", "Connections currently open (handshake done, target connected)."),
		connTimeout:   counter("conn_timeout_total", "Open connections closed by the close timeout or the maximum lifetime."),
		handshake: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: prefix, Name: "conn_handshake_seconds",
			Help:    "Time to complete the TLS handshake (and, in client mode, the dial).",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16),
		}, tunnelLabels),
		lifetime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: prefix, Name: "conn_lifetime_seconds",
			Help:    "Lifetime of proxied connections.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
		}, tunnelLabels),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: prefix, Name: "bytes_total",
			Help: "Bytes proxied; direction in is from the listener's peer to the target, out is back.",
		}, append(tunnelLabels[:len(tunnelLabels):len(tunnelLabels)], "direction")),
		reloads:        counter("reload_total", "Successful credential reloads."),
		reloadFailures: counter("reload_failures_total", "Failed credential reloads (the old credentials stay)."),
		reauthClosed:   counter("conn_reauthorize_closed_total", "Open connections closed because a reload's new access rules refuse their peer (reauthorize: true)."),
		backendUp:      gauge("backend_up", "1 when the last backend health check passed, 0 when it failed."),
		certNotAfter:   gauge("cert_not_after_seconds", "Expiry of the tunnel's current certificate, as a Unix timestamp."),
		reg:            reg,
	}
	f.all = []prometheus.Collector{f.accepts, f.acceptSuccess, f.acceptError, f.acceptTimeout,
		f.connOpen, f.connTimeout, f.handshake, f.lifetime, f.bytes, f.reloads, f.reloadFailures,
		f.reauthClosed, f.backendUp, f.certNotAfter}
	if reg != nil {
		for i, c := range f.all {
			if err := reg.Register(c); err != nil {
				for _, r := range f.all[:i] {
					reg.Unregister(r)
				}
				return nil, err
			}
		}
	}
	return f, nil
}

// Unregister removes the families from their registry.
func (f *MetricFamilies) Unregister() {
	if f.reg == nil {
		return
	}
	for _, c := range f.all {
		f.reg.Unregister(c)
	}
}

// For creates the series of the tunnel name in mode (they appear at zero).
func (f *MetricFamilies) For(name, mode string) *Metrics {
	lv := []string{name, mode}
	return &Metrics{
		accepts:        f.accepts.WithLabelValues(lv...),
		acceptSuccess:  f.acceptSuccess.WithLabelValues(lv...),
		acceptError:    f.acceptError.WithLabelValues(lv...),
		acceptTimeout:  f.acceptTimeout.WithLabelValues(lv...),
		connOpen:       f.connOpen.WithLabelValues(lv...),
		connTimeout:    f.connTimeout.WithLabelValues(lv...),
		handshake:      f.handshake.WithLabelValues(lv...),
		lifetime:       f.lifetime.WithLabelValues(lv...),
		bytesIn:        f.bytes.WithLabelValues(name, mode, "in"),
		bytesOut:       f.bytes.WithLabelValues(name, mode, "out"),
		reloads:        f.reloads.WithLabelValues(lv...),
		reloadFailures: f.reloadFailures.WithLabelValues(lv...),
		reauthClosed:   f.reauthClosed.WithLabelValues(lv...),
		backendUp:      f.backendUp.WithLabelValues(lv...),
		certNotAfter:   f.certNotAfter.WithLabelValues(lv...),
		fam:            f,
		name:           name,
		mode:           mode,
	}
}

// Metrics are one tunnel's series: its children of the process's
// MetricFamilies.
type Metrics struct {
	accepts        prometheus.Counter
	acceptSuccess  prometheus.Counter
	acceptError    prometheus.Counter
	acceptTimeout  prometheus.Counter
	connOpen       prometheus.Gauge
	connTimeout    prometheus.Counter
	handshake      prometheus.Observer
	lifetime       prometheus.Observer
	bytesIn        prometheus.Counter // from the listener's peer towards the target
	bytesOut       prometheus.Counter // from the target back to the listener's peer
	reloads        prometheus.Counter
	reloadFailures prometheus.Counter
	reauthClosed   prometheus.Counter
	backendUp      prometheus.Gauge
	certNotAfter   prometheus.Gauge

	fam        *MetricFamilies
	name, mode string
}

// Unregister removes the tunnel's series, when the tunnel goes away.
func (m *Metrics) Unregister() {
	f := m.fam
	for _, v := range []*prometheus.MetricVec{f.accepts.MetricVec, f.acceptSuccess.MetricVec,
		f.acceptError.MetricVec, f.acceptTimeout.MetricVec, f.connOpen.MetricVec, f.connTimeout.MetricVec,
		f.handshake.MetricVec, f.lifetime.MetricVec, f.reloads.MetricVec, f.reloadFailures.MetricVec,
		f.reauthClosed.MetricVec, f.backendUp.MetricVec, f.certNotAfter.MetricVec} {
		v.DeleteLabelValues(m.name, m.mode)
	}
	f.bytes.DeleteLabelValues(m.name, m.mode, "in")
	f.bytes.DeleteLabelValues(m.name, m.mode, "out")
}

// ReloadFailures counts failed reloads (for tests and fleet summaries).
func (m *Metrics) ReloadFailures() prometheus.Counter { return m.reloadFailures }

// ConnOpen, BytesIn and BytesOut expose series for tests and summaries.
func (m *Metrics) ConnOpen() prometheus.Gauge   { return m.connOpen }
func (m *Metrics) BytesIn() prometheus.Counter  { return m.bytesIn }
func (m *Metrics) BytesOut() prometheus.Counter { return m.bytesOut }
