package statusd

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

type jsonPoint struct {
	Hostname  string      `json:"hostname"`
	Metric    string      `json:"metric"`
	Timestamp int64       `json:"timestamp"`
	Value     json.Number `json:"value"`
	Tunnel    string      `json:"tunnel"`
}

func decodePoints(t *testing.T, raw []byte) []jsonPoint {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var points []jsonPoint
	if err := dec.Decode(&points); err != nil {
		t.Fatalf("decoding metrics: %v: %.300s", err, raw)
	}
	return points
}

// TestMetricsJSON checks upstream's JSON metrics: names, integer values,
// nanosecond durations, tunnel labels, ordering.
func TestMetricsJSON(t *testing.T) {
	f := newFleet(t)
	f.lifetime["alpha"].Observe(0.001)
	f.lifetime["alpha"].Observe(0.003)
	// Gamma exports exact extremes of its lifetime histogram.
	f.lifetime["gamma"].Observe(0.0042)
	f.lifetime["gamma"].Observe(0.0007)
	gr := prometheus.WrapRegistererWith(prometheus.Labels{"tunnel": "gamma", "mode": "client"}, f.registry)
	for name, v := range map[string]float64{"ghostunnel_conn_lifetime_min_seconds": 0.0007, "ghostunnel_conn_lifetime_max_seconds": 0.0042} {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: name})
		g.Set(v)
		gr.MustRegister(g)
	}

	s := serve(t, Config{Addr: "http://127.0.0.1:0", Source: f.source, Gatherer: f.registry, Hostname: "h1"})
	e := httpEndpoint(t, s)
	before := time.Now().Unix()
	code, ct, raw := e.get(t, "/_metrics/json")
	if code != http.StatusOK || ct != "application/json" {
		t.Fatalf("GET /_metrics/json: %d %q", code, ct)
	}
	points := decodePoints(t, raw)

	// Raw key order of an entry.
	var entries []json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		t.Fatal(err)
	}
	if got := keyOrder(t, entries[0]); !slices.Equal(got, []string{"hostname", "metric", "timestamp", "value", "tunnel"}) {
		t.Errorf("entry keys %v", got)
	}

	values := map[string]map[string]json.Number{}
	for i, p := range points {
		if p.Hostname != "h1" || p.Tunnel == "" || p.Timestamp < before || p.Timestamp > time.Now().Unix() {
			t.Errorf("point %+v", p)
		}
		if !strings.HasPrefix(p.Metric, "ghostunnel.") {
			t.Errorf("unexpected metric %q (go_/process_ families must be skipped)", p.Metric)
		}
		if i > 0 {
			prev := points[i-1]
			if prev.Tunnel > p.Tunnel || (prev.Tunnel == p.Tunnel && prev.Metric > p.Metric) {
				t.Errorf("not sorted: %+v before %+v", prev, p)
			}
		}
		if values[p.Tunnel] == nil {
			values[p.Tunnel] = map[string]json.Number{}
		}
		if _, dup := values[p.Tunnel][p.Metric]; dup {
			t.Errorf("duplicate %s %s", p.Tunnel, p.Metric)
		}
		values[p.Tunnel][p.Metric] = p.Value
	}

	integer := func(tunnel, metric string) int64 {
		t.Helper()
		v, ok := values[tunnel][metric]
		if !ok {
			t.Fatalf("%s: no %s", tunnel, metric)
		}
		n, err := v.Int64()
		if err != nil {
			t.Fatalf("%s %s = %s, not an integer", tunnel, metric, v)
		}
		return n
	}
	for _, tunnel := range []string{"alpha", "beta", "gamma"} {
		for metric, want := range map[string]int64{
			"ghostunnel.accept.total":   10,
			"ghostunnel.accept.success": 7,
			"ghostunnel.accept.error":   2,
			"ghostunnel.accept.timeout": 1,
			"ghostunnel.conn.open":      4,
			"ghostunnel.conn.timeout":   3,
			"ghostunnel.bytes.in":       100,
			"ghostunnel.bytes.out":      200,
		} {
			if got := integer(tunnel, metric); got != want {
				t.Errorf("%s %s = %d, want %d", tunnel, metric, got, want)
			}
		}
		for _, h := range []string{"ghostunnel.conn.lifetime", "ghostunnel.conn.handshake"} {
			for _, suffix := range []string{"count", "min", "max", "mean", "50-percentile", "75-percentile", "95-percentile", "99-percentile"} {
				integer(tunnel, h+"."+suffix)
			}
		}
		if n := len(values[tunnel]); n != 8+16 {
			t.Errorf("%s has %d metrics, want 24: %v", tunnel, n, values[tunnel])
		}
	}

	// Alpha: 1ms and 3ms.
	lt := func(tunnel, s string) int64 { return integer(tunnel, "ghostunnel.conn.lifetime."+s) }
	if c := lt("alpha", "count"); c != 2 {
		t.Errorf("count %d", c)
	}
	if m := lt("alpha", "mean"); m != 2_000_000 {
		t.Errorf("mean %d ns, want 2000000", m)
	}
	seq := []int64{lt("alpha", "min"), lt("alpha", "50-percentile"), lt("alpha", "75-percentile"), lt("alpha", "95-percentile"), lt("alpha", "99-percentile"), lt("alpha", "max")}
	if !slices.IsSorted(seq) || seq[0] <= 0 || seq[0] > 1_000_000 || seq[1] < 500_000 || seq[1] > 3_000_000 || seq[4] < 2_000_000 || seq[5] < 3_000_000 || seq[5] > 5_000_000 {
		t.Errorf("alpha lifetime min, p50, p75, p95, p99, max = %v ns", seq)
	}
	// Gamma: exact extremes from its gauges, which are not listed alone.
	if lt("gamma", "min") != 700_000 || lt("gamma", "max") != 4_200_000 {
		t.Errorf("gamma min/max = %d/%d", lt("gamma", "min"), lt("gamma", "max"))
	}
	if _, ok := values["gamma"]["ghostunnel.conn.lifetime.min"]; !ok {
		t.Error("no gamma min")
	}
	for m := range values["gamma"] {
		if strings.Contains(m, "min.seconds") || strings.Contains(m, "max.seconds") {
			t.Errorf("companion gauge listed: %s", m)
		}
	}
	// Beta: empty histograms are zeros.
	if lt("beta", "count") != 0 || lt("beta", "99-percentile") != 0 {
		t.Error("empty histogram not zero")
	}

	// The other JSON paths serve the same list.
	for _, p := range []string{"/_metrics", "/_metrics?format=json"} {
		_, _, raw := e.get(t, p)
		if got := decodePoints(t, raw); len(got) != len(points) {
			t.Errorf("GET %s: %d points, want %d", p, len(got), len(points))
		}
	}
}

// TestMetricsPrometheus parses the text exposition.
func TestMetricsPrometheus(t *testing.T) {
	f := newFleet(t)
	f.lifetime["beta"].Observe(0.001)
	s := serve(t, Config{Addr: "127.0.0.1:0", Source: f.source, Gatherer: f.registry})
	e := httpsEndpoint(t, s, f.ca.Pool())
	for _, path := range []string{"/_metrics/prometheus", "/_metrics?format=prometheus"} {
		code, ct, raw := e.get(t, path)
		if code != http.StatusOK || !strings.HasPrefix(ct, "text/plain") {
			t.Fatalf("GET %s: %d %q", path, code, ct)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("GET %s: parsing: %v", path, err)
		}
		for name, typ := range map[string]dto.MetricType{
			"ghostunnel_accept_total":          dto.MetricType_COUNTER,
			"ghostunnel_conn_open":             dto.MetricType_GAUGE,
			"ghostunnel_bytes_total":           dto.MetricType_COUNTER,
			"ghostunnel_conn_lifetime_seconds": dto.MetricType_HISTOGRAM,
			"go_goroutines":                    dto.MetricType_GAUGE,
		} {
			fam := families[name]
			if fam == nil || fam.GetType() != typ {
				t.Errorf("%s: %v, want type %v", name, fam.GetType(), typ)
			}
		}
		seen := map[string]bool{}
		for _, m := range families["ghostunnel_accept_total"].GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			seen[labels["tunnel"]+"/"+labels["mode"]] = true
			if m.GetCounter().GetValue() != 10 {
				t.Errorf("accept_total %v = %v", labels, m.GetCounter().GetValue())
			}
		}
		if !seen["alpha/server"] || !seen["beta/server"] || !seen["gamma/client"] || len(seen) != 3 {
			t.Errorf("accept_total series: %v", seen)
		}
		for _, m := range families["ghostunnel_conn_lifetime_seconds"].GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "tunnel" && lp.GetValue() == "beta" && m.GetHistogram().GetSampleCount() != 1 {
					t.Errorf("beta lifetime count %d", m.GetHistogram().GetSampleCount())
				}
			}
		}
		for _, m := range families["ghostunnel_bytes_total"].GetMetric() {
			if len(m.GetLabel()) != 3 {
				t.Errorf("bytes_total labels %v", m.GetLabel())
			}
		}
	}
}

// histogram builds a classic histogram from bounds and observations.
func histogram(bounds []float64, obs ...float64) *dto.Histogram {
	h := &dto.Histogram{}
	count, sum := uint64(len(obs)), 0.0
	for _, o := range obs {
		sum += o
	}
	h.SampleCount, h.SampleSum = &count, &sum
	for _, b := range bounds {
		n := uint64(0)
		for _, o := range obs {
			if o <= b {
				n++
			}
		}
		h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: &b, CumulativeCount: &n})
	}
	return h
}

// TestHistogramStats checks the estimates on edge cases.
func TestHistogramStats(t *testing.T) {
	bounds := []float64{1, 2, 5, 10}
	check := func(name string, st histStats) {
		t.Helper()
		seq := append([]float64{st.min}, st.percentiles[:]...)
		seq = append(seq, st.max)
		if !slices.IsSorted(seq) || st.mean < st.min || st.mean > st.max {
			t.Errorf("%s: inconsistent %+v", name, st)
		}
		for _, v := range seq {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Errorf("%s: %v", name, st)
			}
		}
	}

	if st := histogramStats(histogram(bounds), nil, nil); st != (histStats{}) {
		t.Errorf("empty: %+v", st)
	}
	st := histogramStats(histogram(bounds, 3), nil, nil)
	check("one", st)
	if st.min != 3 || st.max != 3 || st.percentiles[0] != 3 {
		t.Errorf("one observation: %+v", st)
	}
	st = histogramStats(histogram(bounds, 1.5, 1.5, 1.5, 4, 9), nil, nil)
	check("spread", st)
	if st.min != 1 || st.max != 10 || st.percentiles[0] < 1 || st.percentiles[0] > 2 || st.percentiles[3] < 5 {
		t.Errorf("spread: %+v", st)
	}
	st = histogramStats(histogram(bounds, 3, 50, 70), nil, nil)
	check("overflow", st)
	if st.max < 10 || st.percentiles[3] < 10 {
		t.Errorf("overflow: %+v", st)
	}
	st = histogramStats(histogram(bounds, 30, 40), nil, nil)
	check("all overflow", st)
	if st.min != 10 || st.max < 35 {
		t.Errorf("all overflow: %+v", st)
	}
	st = histogramStats(histogram(nil, 2, 4), nil, nil)
	check("no buckets", st)
	if st.mean != 3 {
		t.Errorf("no buckets: %+v", st)
	}
	lo, hi := 1.2, 9.5
	st = histogramStats(histogram(bounds, 1.2, 3, 9.5), &lo, &hi)
	check("exact", st)
	if st.min != 1.2 || st.max != 9.5 || st.percentiles[3] > 9.5 {
		t.Errorf("exact extremes: %+v", st)
	}
}

// TestJSONNames checks the generic naming rule.
func TestJSONNames(t *testing.T) {
	for _, tc := range []struct {
		rest    string
		typ     dto.MetricType
		want    string
		seconds bool
	}{
		{"accept_total", dto.MetricType_COUNTER, "accept.total", false},
		{"accept_success_total", dto.MetricType_COUNTER, "accept.success", false},
		{"conn_open", dto.MetricType_GAUGE, "conn.open", false},
		{"conn_lifetime_seconds", dto.MetricType_HISTOGRAM, "conn.lifetime", true},
		{"reload_duration_seconds", dto.MetricType_HISTOGRAM, "reload.duration", true},
		{"dial_errors_total", dto.MetricType_COUNTER, "dial.errors", false},
		{"cert_expiry_seconds", dto.MetricType_GAUGE, "cert.expiry.seconds", false},
		{"payload_bytes", dto.MetricType_HISTOGRAM, "payload.bytes", false},
	} {
		got, seconds := jsonBaseName(tc.rest, tc.typ)
		if got != tc.want || seconds != tc.seconds {
			t.Errorf("jsonBaseName(%q) = %q %v, want %q %v", tc.rest, got, seconds, tc.want, tc.seconds)
		}
	}
}
