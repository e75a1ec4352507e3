package statusd

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Labels that identify a tunnel's series rather than name a metric.
const (
	tunnelLabel = "tunnel"
	modeLabel   = "mode"
)

// knownName maps a tunnel metric family (without "PREFIX_") to upstream's
// dotted name (without "PREFIX."). Other families use the generic rule of
// jsonBaseName.
func knownName(rest string) (string, bool) {
	switch rest {
	case "accept_total":
		return "accept.total", true
	case "accept_success_total":
		return "accept.success", true
	case "accept_error_total":
		return "accept.error", true
	case "accept_timeout_total":
		return "accept.timeout", true
	case "conn_open":
		return "conn.open", true
	case "conn_timeout_total":
		return "conn.timeout", true
	case "conn_lifetime_seconds":
		return "conn.lifetime", true
	case "conn_handshake_seconds":
		return "conn.handshake", true
	}
	return "", false
}

// numPercentiles is how many percentiles are reported for a histogram.
const numPercentiles = 4

// percentile is a reported percentile and its name suffix.
type percentile struct {
	q    float64
	name string
}

// percentiles returns the percentiles reported for histograms.
func percentiles() [numPercentiles]percentile {
	return [...]percentile{
		{0.50, "50-percentile"},
		{0.75, "75-percentile"},
		{0.95, "95-percentile"},
		{0.99, "99-percentile"},
	}
}

// metricsHandler serves /_metrics as upstream's JSON list and as the
// Prometheus text exposition.
type metricsHandler struct {
	gatherer   prometheus.Gatherer
	prefix     string
	hostname   string
	logger     log.Logger
	prometheus http.Handler
}

func newMetricsHandler(g prometheus.Gatherer, prefix, hostname string, logger log.Logger) *metricsHandler {
	errLog := promErrorLogger{level.Error(log.With(logger, "component", "metrics"))}
	return &metricsHandler{
		gatherer: g,
		prefix:   prefix,
		hostname: hostname,
		logger:   logger,
		prometheus: promhttp.HandlerFor(g, promhttp.HandlerOpts{
			ErrorLog:       errLog,
			ErrorHandling:  promhttp.ContinueOnError,
			CoalesceGather: true,
		}),
	}
}

// promErrorLogger adapts a go-kit logger to promhttp.Logger.
type promErrorLogger struct{ logger log.Logger }

func (l promErrorLogger) Println(v ...any) {
	l.logger.Log("msg", "serving prometheus metrics", "err", strings.TrimSpace(fmt.Sprintln(v...)))
}

// MetricPoint is one entry of the JSON metrics list. Value is a float64
// that encodes as a JSON integer when it is integral.
type MetricPoint struct {
	Hostname  string     `json:"hostname"`
	Metric    string     `json:"metric"`
	Timestamp int64      `json:"timestamp"`
	Value     jsonNumber `json:"value"`
	Tunnel    string     `json:"tunnel"`
}

// jsonNumber encodes integral values as JSON integers.
type jsonNumber float64

// MarshalJSON implements json.Marshaler.
func (n jsonNumber) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if f == math.Trunc(f) && math.Abs(f) < 1<<63 {
		return strconv.AppendInt(nil, int64(f), 10), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

// GatherPoints gathers g and renders it as the JSON metrics list of GET
// /_metrics: the tunnel metric families named PREFIX_... (prefix "" means
// DefaultMetricsPrefix), timestamped now, sorted by tunnel then metric. On
// a gather error it returns what could be gathered along with the error.
func GatherPoints(g prometheus.Gatherer, prefix, hostname string) ([]MetricPoint, error) {
	if prefix == "" {
		prefix = DefaultMetricsPrefix
	}
	families, err := g.Gather()
	return renderJSON(families, prefix, hostname, time.Now()), err
}

// serveJSON serves the JSON metrics list.
func (m *metricsHandler) serveJSON(w http.ResponseWriter, _ *http.Request) {
	points, err := GatherPoints(m.gatherer, m.prefix, m.hostname)
	if err != nil {
		// Gather returns what it could collect along with the error.
		level.Warn(m.logger).Log("msg", "gathering metrics", "err", err)
	}
	body, err := json.Marshal(points)
	if err != nil {
		level.Error(m.logger).Log("msg", "encoding metrics", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// renderJSON converts the tunnel metric families (named PREFIX_..., with a
// tunnel label) to upstream's JSON list, sorted by tunnel then metric.
// Families without a tunnel label (go_*, process_*, ...) are skipped.
func renderJSON(families []*dto.MetricFamily, prefix, hostname string, now time.Time) []MetricPoint {
	byName := make(map[string]*dto.MetricFamily, len(families))
	for _, f := range families {
		byName[f.GetName()] = f
	}
	// Gauges giving exact extremes of a histogram are used by it, not
	// listed on their own.
	companions := make(map[string]bool)
	for _, f := range families {
		if f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_GAUGE_HISTOGRAM {
			lo, hi := extremeNames(f.GetName())
			companions[lo], companions[hi] = byName[lo] != nil, byName[hi] != nil
		}
	}

	points := make([]MetricPoint, 0)
	ts := now.Unix()
	emit := func(tunnel, metric string, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		points = append(points, MetricPoint{Hostname: hostname, Metric: metric, Timestamp: ts, Value: jsonNumber(v), Tunnel: tunnel})
	}

	for _, f := range families {
		rest, ok := strings.CutPrefix(f.GetName(), prefix+"_")
		if !ok || companions[f.GetName()] {
			continue
		}
		base, seconds := jsonBaseName(rest, f.GetType())
		base = prefix + "." + base
		var lo, hi map[string]float64
		if seconds {
			loName, hiName := extremeNames(f.GetName())
			lo, hi = gaugeValues(byName[loName]), gaugeValues(byName[hiName])
		}
		for _, m := range f.GetMetric() {
			tunnel, suffix, ok := seriesLabels(m)
			if !ok {
				continue
			}
			name := base + suffix
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				emit(tunnel, name, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				emit(tunnel, name, m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				emit(tunnel, name, m.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				key := labelKey(m)
				st := histogramStats(m.GetHistogram(), lookup(lo, key), lookup(hi, key))
				scale := 1.0
				if seconds {
					scale = 1e9
				}
				emit(tunnel, name+".count", float64(st.count))
				emit(tunnel, name+".min", scaled(st.min, scale))
				emit(tunnel, name+".max", scaled(st.max, scale))
				emit(tunnel, name+".mean", scaled(st.mean, scale))
				for i, p := range percentiles() {
					emit(tunnel, name+"."+p.name, scaled(st.percentiles[i], scale))
				}
			case dto.MetricType_SUMMARY:
				sm := m.GetSummary()
				scale := 1.0
				if seconds {
					scale = 1e9
				}
				emit(tunnel, name+".count", float64(sm.GetSampleCount()))
				mean := 0.0
				if sm.GetSampleCount() > 0 {
					mean = sm.GetSampleSum() / float64(sm.GetSampleCount())
				}
				emit(tunnel, name+".mean", scaled(mean, scale))
				for _, q := range sm.GetQuantile() {
					pct := strconv.FormatFloat(q.GetQuantile()*100, 'f', -1, 64)
					emit(tunnel, name+"."+pct+"-percentile", scaled(q.GetValue(), scale))
				}
			}
		}
	}
	slices.SortStableFunc(points, func(a, b MetricPoint) int {
		return cmp.Or(strings.Compare(a.Tunnel, b.Tunnel), strings.Compare(a.Metric, b.Metric))
	})
	return points
}

// jsonBaseName is the dotted name (without "PREFIX.") of a family named
// "PREFIX_"+rest: a known upstream name, else rest without _total (and,
// for histograms and summaries, without _seconds), with dots for
// underscores. seconds reports a histogram or summary of durations in
// seconds, whose values are reported in nanoseconds.
func jsonBaseName(rest string, typ dto.MetricType) (name string, seconds bool) {
	distribution := typ == dto.MetricType_HISTOGRAM || typ == dto.MetricType_GAUGE_HISTOGRAM || typ == dto.MetricType_SUMMARY
	if distribution {
		seconds = strings.HasSuffix(rest, "_seconds")
	}
	if n, ok := knownName(rest); ok {
		return n, seconds
	}
	rest = strings.TrimSuffix(rest, "_total")
	if seconds {
		rest = strings.TrimSuffix(rest, "_seconds")
	}
	return strings.ReplaceAll(rest, "_", "."), seconds
}

// extremeNames returns the names of the optional gauges holding the exact
// minimum and maximum of histogram h: X_min_seconds and X_max_seconds for
// X_seconds, else h_min and h_max.
func extremeNames(h string) (lo, hi string) {
	if base, ok := strings.CutSuffix(h, "_seconds"); ok {
		return base + "_min_seconds", base + "_max_seconds"
	}
	return h + "_min", h + "_max"
}

// gaugeValues indexes a gauge family's values by label set.
func gaugeValues(f *dto.MetricFamily) map[string]float64 {
	if f == nil {
		return nil
	}
	out := make(map[string]float64, len(f.GetMetric()))
	for _, m := range f.GetMetric() {
		switch {
		case m.GetGauge() != nil:
			out[labelKey(m)] = m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			out[labelKey(m)] = m.GetUntyped().GetValue()
		}
	}
	return out
}

func lookup(m map[string]float64, key string) *float64 {
	if v, ok := m[key]; ok {
		return &v
	}
	return nil
}

// labelKey identifies a series by its labels (which the registry sorts).
func labelKey(m *dto.Metric) string {
	var b strings.Builder
	for _, lp := range m.GetLabel() {
		b.WriteString(lp.GetName())
		b.WriteByte(0)
		b.WriteString(lp.GetValue())
		b.WriteByte(0)
	}
	return b.String()
}

// seriesLabels returns the series' tunnel, and the values of its other
// labels (except mode) as a dotted name suffix, e.g. ".in" for
// direction="in". ok is false for series without a tunnel label.
func seriesLabels(m *dto.Metric) (tunnel, suffix string, ok bool) {
	for _, lp := range m.GetLabel() {
		switch lp.GetName() {
		case tunnelLabel:
			tunnel, ok = lp.GetValue(), true
		case modeLabel:
		default:
			if v := lp.GetValue(); v != "" {
				suffix += "." + v
			}
		}
	}
	return tunnel, suffix, ok
}

func scaled(v, scale float64) float64 {
	if scale == 1 {
		return v
	}
	return math.Round(v * scale)
}

// histStats summarizes a histogram the way upstream's timers are reported.
type histStats struct {
	count       uint64
	min, max    float64
	mean        float64
	percentiles [numPercentiles]float64
}

// histogramStats estimates count, min, max, mean and percentiles of a
// classic histogram. Percentiles are interpolated linearly within buckets;
// min and max are the bounds of the lowest and highest non-empty buckets,
// unless exact values (exactMin, exactMax) are given. All estimates are kept
// consistent: min <= percentiles <= max and min <= mean <= max.
func histogramStats(h *dto.Histogram, exactMin, exactMax *float64) histStats {
	st := histStats{count: h.GetSampleCount()}
	if st.count == 0 {
		return st
	}
	count := float64(st.count)
	sum := h.GetSampleSum()
	st.mean = sum / count

	type bucket struct {
		lower, upper float64
		n            float64 // observations in (lower, upper]
		cum          float64
	}
	var buckets []bucket
	prevUpper, prevCum := math.Inf(-1), 0.0
	for _, b := range h.GetBucket() {
		upper, cum := b.GetUpperBound(), float64(b.GetCumulativeCount())
		if math.IsInf(upper, +1) {
			break
		}
		lower := prevUpper
		if math.IsInf(lower, -1) {
			lower = math.Min(0, upper)
		}
		buckets = append(buckets, bucket{lower: lower, upper: upper, n: cum - prevCum, cum: cum})
		prevUpper, prevCum = upper, cum
	}
	overflow := count - prevCum // observations above the last finite bound

	// Estimated extremes.
	st.min, st.max = st.mean, st.mean
	for _, b := range buckets {
		if b.n > 0 {
			st.min = b.lower
			break
		}
	}
	if overflow > 0 {
		if len(buckets) == 0 {
			st.min = st.mean
		} else if prevCum == 0 {
			st.min = buckets[len(buckets)-1].upper
		}
		// The overflowing observations average at least this much.
		inBuckets := 0.0
		for _, b := range buckets {
			inBuckets += b.n * (b.lower + b.upper) / 2
		}
		st.max = math.Max(prevUpper, (sum-inBuckets)/overflow)
		if len(buckets) == 0 {
			st.max = st.mean
		}
	} else {
		for i := len(buckets) - 1; i >= 0; i-- {
			if buckets[i].n > 0 {
				st.max = buckets[i].upper
				break
			}
		}
	}
	if exactMin != nil {
		st.min = *exactMin
	}
	if exactMax != nil {
		st.max = *exactMax
	}
	if st.count == 1 && exactMin == nil && exactMax == nil {
		st.min, st.max = sum, sum
	}
	st.min = math.Min(st.min, st.mean)
	st.max = math.Max(st.max, st.mean)

	for i, p := range percentiles() {
		rank := p.q * count
		v := st.max
		for _, b := range buckets {
			if b.cum >= rank && b.n > 0 {
				lo, hi := math.Max(b.lower, st.min), math.Min(b.upper, st.max)
				v = lo + (hi-lo)*(rank-(b.cum-b.n))/b.n
				break
			}
		}
		st.percentiles[i] = math.Min(math.Max(v, st.min), st.max)
	}
	return st
}
