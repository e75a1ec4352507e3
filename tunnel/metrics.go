package tunnel

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// MetricFamilies are the per-tunnel series of one process, exported as one
// Prometheus collector: a family per metric, labelled tunnel and mode. A
// tunnel's Metrics are plain atomic values that the collector reads at each
// scrape, so a tunnel costs about a kilobyte: no descriptors, label pairs,
// registrations or client-library children of its own (a fleet of a
// thousand tunnels would otherwise hold 15,000 of them).
type MetricFamilies struct {
	accepts, acceptSuccess, acceptError, acceptTimeout *prometheus.Desc
	connOpen, connTimeout                              *prometheus.Desc
	handshake, lifetime                                *prometheus.Desc
	// The exact extremes of the two histograms (their buckets only bound
	// them), which /_metrics's JSON reports as .min and .max, as upstream.
	handshakeMin, handshakeMax, lifetimeMin, lifetimeMax *prometheus.Desc
	bytes                                                *prometheus.Desc // plus direction
	reloads, reloadFailures, reauthClosed                *prometheus.Desc
	backendUp, certNotAfter                              *prometheus.Desc

	handshakeBuckets, lifetimeBuckets []float64

	mu      sync.Mutex
	tunnels map[*Metrics]struct{}
	reg     prometheus.Registerer
}

// NewMetricFamilies creates the per-tunnel metric families and registers
// them on reg; reg may be nil (values kept but not exported).
func NewMetricFamilies(reg prometheus.Registerer, prefix string) (*MetricFamilies, error) {
	if prefix == "" {
		prefix = "ghostunnel"
	}
	labels := []string{"tunnel", "mode"}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(prefix, "", name), help, labels, nil)
	}
	f := &MetricFamilies{
		accepts:       desc("accept_total", "Connections accepted on the listener."),
		acceptSuccess: desc("accept_success_total", "Connections that completed the handshake and reached the target."),
		acceptError:   desc("accept_error_total", "Connections that failed the handshake, access control or the backend dial."),
		acceptTimeout: desc("accept_timeout_total", "Connections whose handshake or backend dial timed out."),
		connOpen:      desc("conn_open", "Connections currently open (handshake done, target connected)."),
		connTimeout:   desc("conn_timeout_total", "Open connections closed by the close timeout or the maximum lifetime."),
		handshake:     desc("conn_handshake_seconds", "Time to complete the TLS handshake (and, in client mode, the dial)."),
		lifetime:      desc("conn_lifetime_seconds", "Lifetime of proxied connections."),
		handshakeMin:  desc("conn_handshake_min_seconds", "Shortest handshake observed (conn_handshake_seconds)."),
		handshakeMax:  desc("conn_handshake_max_seconds", "Longest handshake observed (conn_handshake_seconds)."),
		lifetimeMin:   desc("conn_lifetime_min_seconds", "Shortest connection lifetime observed (conn_lifetime_seconds)."),
		lifetimeMax:   desc("conn_lifetime_max_seconds", "Longest connection lifetime observed (conn_lifetime_seconds)."),
		bytes: prometheus.NewDesc(prometheus.BuildFQName(prefix, "", "bytes_total"),
			"Bytes proxied; direction in is from the listener's peer to the target, out is back.",
			[]string{"tunnel", "mode", "direction"}, nil),
		reloads:          desc("reload_total", "Successful credential reloads."),
		reloadFailures:   desc("reload_failures_total", "Failed credential reloads (the old credentials stay)."),
		reauthClosed:     desc("conn_reauthorize_closed_total", "Open connections closed because a reload's new access rules refuse their peer (reauthorize: true)."),
		backendUp:        desc("backend_up", "1 when the tunnel last reached its backend (a proxied connection or a health check), 0 when that failed."),
		certNotAfter:     desc("cert_not_after_seconds", "Expiry of the tunnel's current certificate, as a Unix timestamp."),
		handshakeBuckets: prometheus.ExponentialBuckets(0.00025, 2, 16),
		lifetimeBuckets:  prometheus.ExponentialBuckets(0.001, 4, 12),
		tunnels:          make(map[*Metrics]struct{}),
		reg:              reg,
	}
	if reg != nil {
		if err := reg.Register(f); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Unregister removes the families from their registry.
func (f *MetricFamilies) Unregister() {
	if f.reg != nil {
		f.reg.Unregister(f)
	}
}

// Describe implements prometheus.Collector.
func (f *MetricFamilies) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{f.accepts, f.acceptSuccess, f.acceptError, f.acceptTimeout,
		f.connOpen, f.connTimeout, f.handshake, f.lifetime, f.bytes, f.reloads, f.reloadFailures,
		f.reauthClosed, f.backendUp, f.certNotAfter,
		f.handshakeMin, f.handshakeMax, f.lifetimeMin, f.lifetimeMax} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: every live tunnel's values.
func (f *MetricFamilies) Collect(ch chan<- prometheus.Metric) {
	f.mu.Lock()
	ms := make([]*Metrics, 0, len(f.tunnels))
	for m := range f.tunnels {
		ms = append(ms, m)
	}
	f.mu.Unlock()
	for _, m := range ms {
		counter := func(d *prometheus.Desc, c *Counter) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, c.Value(), m.name, m.mode)
		}
		gauge := func(d *prometheus.Desc, g *Gauge) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, g.Value(), m.name, m.mode)
		}
		counter(f.accepts, &m.accepts)
		counter(f.acceptSuccess, &m.acceptSuccess)
		counter(f.acceptError, &m.acceptError)
		counter(f.acceptTimeout, &m.acceptTimeout)
		gauge(f.connOpen, &m.connOpen)
		counter(f.connTimeout, &m.connTimeout)
		ch <- m.handshake.metric(f.handshake, f.handshakeBuckets, m.name, m.mode)
		ch <- m.lifetime.metric(f.lifetime, f.lifetimeBuckets, m.name, m.mode)
		extremes := func(h *Histogram, lo, hi *prometheus.Desc) {
			if min, max, ok := h.extremes(); ok {
				ch <- prometheus.MustNewConstMetric(lo, prometheus.GaugeValue, min, m.name, m.mode)
				ch <- prometheus.MustNewConstMetric(hi, prometheus.GaugeValue, max, m.name, m.mode)
			}
		}
		extremes(&m.handshake, f.handshakeMin, f.handshakeMax)
		extremes(&m.lifetime, f.lifetimeMin, f.lifetimeMax)
		ch <- prometheus.MustNewConstMetric(f.bytes, prometheus.CounterValue, m.bytesIn.Value(), m.name, m.mode, "in")
		ch <- prometheus.MustNewConstMetric(f.bytes, prometheus.CounterValue, m.bytesOut.Value(), m.name, m.mode, "out")
		counter(f.reloads, &m.reloads)
		counter(f.reloadFailures, &m.reloadFailures)
		counter(f.reauthClosed, &m.reauthClosed)
		gauge(f.backendUp, &m.backendUp)
		gauge(f.certNotAfter, &m.certNotAfter)
	}
}

// For creates the series of the tunnel name in mode (they appear at zero).
func (f *MetricFamilies) For(name, mode string) *Metrics {
	m := &Metrics{fam: f, name: name, mode: mode}
	m.handshake.init(f.handshakeBuckets)
	m.lifetime.init(f.lifetimeBuckets)
	f.mu.Lock()
	f.tunnels[m] = struct{}{}
	f.mu.Unlock()
	return m
}

// Metrics are one tunnel's series.
type Metrics struct {
	accepts        Counter
	acceptSuccess  Counter
	acceptError    Counter
	acceptTimeout  Counter
	connOpen       Gauge
	connTimeout    Counter
	handshake      Histogram
	lifetime       Histogram
	bytesIn        Counter // from the listener's peer towards the target
	bytesOut       Counter // from the target back to the listener's peer
	reloads        Counter
	reloadFailures Counter
	reauthClosed   Counter
	backendUp      Gauge
	certNotAfter   Gauge

	fam        *MetricFamilies
	name, mode string
}

// Unregister removes the tunnel's series, when the tunnel goes away.
func (m *Metrics) Unregister() {
	m.fam.mu.Lock()
	delete(m.fam.tunnels, m)
	m.fam.mu.Unlock()
}

// ReloadFailures counts failed reloads (for tests and fleet summaries).
func (m *Metrics) ReloadFailures() float64 { return m.reloadFailures.Value() }

// ConnOpen, BytesIn and BytesOut are current values, for tests and
// summaries.
func (m *Metrics) ConnOpen() float64 { return m.connOpen.Value() }
func (m *Metrics) BytesIn() float64  { return m.bytesIn.Value() }
func (m *Metrics) BytesOut() float64 { return m.bytesOut.Value() }

// Counter is a monotonic count.
type Counter struct{ n atomic.Uint64 }

func (c *Counter) Inc()           { c.n.Add(1) }
func (c *Counter) Add(n uint64)   { c.n.Add(n) }
func (c *Counter) Value() float64 { return float64(c.n.Load()) }

// Gauge is a value that goes up and down.
type Gauge struct{ bits atomic.Uint64 }

func (g *Gauge) Set(v float64)  { g.bits.Store(math.Float64bits(v)) }
func (g *Gauge) Inc()           { g.add(1) }
func (g *Gauge) Dec()           { g.add(-1) }
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

func (g *Gauge) add(d float64) {
	for {
		old := g.bits.Load()
		if g.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// Histogram counts observations in fixed buckets (shared by every tunnel
// through MetricFamilies), plus their sum.
type Histogram struct {
	upper  []float64       // bucket upper bounds, shared
	counts []atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sum    Gauge
	// min and max observed, as float64 bits; valid once seen is set.
	min, max atomic.Uint64
	seen     atomic.Bool
}

// extremes are the smallest and largest observations, ok once there is one.
func (h *Histogram) extremes() (min, max float64, ok bool) {
	if !h.seen.Load() {
		return 0, 0, false
	}
	return math.Float64frombits(h.min.Load()), math.Float64frombits(h.max.Load()), true
}

func (h *Histogram) init(upper []float64) {
	h.upper = upper
	h.counts = make([]atomic.Uint64, len(upper)+1)
	h.min.Store(math.Float64bits(math.Inf(+1)))
	h.max.Store(math.Float64bits(math.Inf(-1)))
}

// Observe adds one observation.
func (h *Histogram) Observe(v float64) {
	h.counts[sort.SearchFloat64s(h.upper, v)].Add(1)
	h.sum.add(v)
	for old := h.min.Load(); v < math.Float64frombits(old) && !h.min.CompareAndSwap(old, math.Float64bits(v)); old = h.min.Load() {
	}
	for old := h.max.Load(); v > math.Float64frombits(old) && !h.max.CompareAndSwap(old, math.Float64bits(v)); old = h.max.Load() {
	}
	h.seen.Store(true)
}

// Count is the number of observations.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// metric is the histogram as a constant metric. The count is the buckets'
// total, so the exposition is consistent even while observations land.
func (h *Histogram) metric(d *prometheus.Desc, upper []float64, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(upper))
	var cum uint64
	for i, ub := range upper {
		cum += h.counts[i].Load()
		buckets[ub] = cum
	}
	cum += h.counts[len(upper)].Load()
	return prometheus.MustNewConstHistogram(d, cum, h.sum.Value(), buckets, labels...)
}
