package tunnel

import (
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

func gatherFamilies(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func labelsOf(m *dto.Metric) string {
	var parts []string
	for _, lp := range m.GetLabel() {
		parts = append(parts, lp.GetName()+"="+lp.GetValue())
	}
	return strings.Join(parts, ",")
}

// TestMetricFamilies: each tunnel's values are exported under the shared
// families with its tunnel and mode labels, histograms cumulative, and a
// tunnel's series leave with it.
func TestMetricFamilies(t *testing.T) {
	reg := prometheus.NewRegistry()
	f, err := NewMetricFamilies(reg, "edge")
	if err != nil {
		t.Fatal(err)
	}
	a, b := f.For("a", "server"), f.For("b", "client")
	a.accepts.Inc()
	a.accepts.Inc()
	a.bytesIn.Add(100)
	a.bytesOut.Add(7)
	a.connOpen.Inc()
	a.connOpen.Inc()
	a.connOpen.Dec()
	a.certNotAfter.Set(1.8e9)
	for _, v := range []float64{0.0001, 0.0003, 0.0003, 100} {
		a.handshake.Observe(v)
	}
	b.reloadFailures.Inc()

	fams := gatherFamilies(t, reg)
	value := func(name, labels string) float64 {
		t.Helper()
		for _, m := range fams[name].GetMetric() {
			if labelsOf(m) == labels {
				if m.Counter != nil {
					return m.Counter.GetValue()
				}
				return m.Gauge.GetValue()
			}
		}
		t.Fatalf("%s{%s} not exported", name, labels)
		return 0
	}
	for _, c := range []struct {
		name, labels string
		want         float64
	}{
		{"edge_accept_total", "mode=server,tunnel=a", 2},
		{"edge_accept_total", "mode=client,tunnel=b", 0},
		{"edge_bytes_total", "direction=in,mode=server,tunnel=a", 100},
		{"edge_bytes_total", "direction=out,mode=server,tunnel=a", 7},
		{"edge_conn_open", "mode=server,tunnel=a", 1},
		{"edge_cert_not_after_seconds", "mode=server,tunnel=a", 1.8e9},
		{"edge_reload_failures_total", "mode=client,tunnel=b", 1},
	} {
		if got := value(c.name, c.labels); got != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// 14, and the handshake's exact extremes (a has handshakes; nobody
	// has a lifetime yet).
	if n := len(fams); n != 16 {
		t.Errorf("%d families exported, want 16", n)
	}
	if v := value("edge_conn_handshake_max_seconds", "mode=server,tunnel=a"); v != 100 {
		t.Errorf("handshake max %v, want 100", v)
	}
	var h *dto.Histogram
	for _, m := range fams["edge_conn_handshake_seconds"].GetMetric() {
		if labelsOf(m) == "mode=server,tunnel=a" {
			h = m.GetHistogram()
		}
	}
	if h.GetSampleCount() != 4 || math.Abs(h.GetSampleSum()-100.0007) > 1e-9 {
		t.Errorf("handshake histogram count %d sum %v, want 4 and 100.0007", h.GetSampleCount(), h.GetSampleSum())
	}
	for _, bk := range h.GetBucket() {
		var want uint64
		switch ub := bk.GetUpperBound(); {
		case ub >= 0.0003:
			want = 3
		case ub >= 0.0001:
			want = 1
		}
		if bk.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v: %d, want %d", bk.GetUpperBound(), bk.GetCumulativeCount(), want)
		}
	}

	a.Unregister()
	if n := testutil.CollectAndCount(f, "edge_accept_total"); n != 1 {
		t.Fatalf("after a left, %d accept_total series, want 1 (b's)", n)
	}
	f.Unregister()
	if n := len(gatherFamilies(t, reg)); n != 0 {
		t.Fatalf("%d families after Unregister", n)
	}
}

// TestMetricsConcurrent: updates from many goroutines while scrapes run are
// all counted (run with -race).
func TestMetricsConcurrent(t *testing.T) {
	reg := prometheus.NewRegistry()
	f, err := NewMetricFamilies(reg, "")
	if err != nil {
		t.Fatal(err)
	}
	m := f.For("t", "server")
	const workers, each = 8, 1000
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				m.accepts.Inc()
				m.connOpen.Inc()
				m.lifetime.Observe(0.5)
				m.connOpen.Dec()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for scraping := true; scraping; {
		select {
		case <-done:
			scraping = false
		default:
			gatherFamilies(t, reg)
		}
	}
	if got := m.accepts.Value(); got != workers*each {
		t.Errorf("accepts %v, want %d", got, workers*each)
	}
	if got := m.connOpen.Value(); got != 0 {
		t.Errorf("conn_open %v, want 0", got)
	}
	if got := m.lifetime.Count(); got != workers*each {
		t.Errorf("lifetime count %d, want %d", got, workers*each)
	}
}

// TestHistogramExtremes: the JSON's .min and .max of a duration are the
// observed extremes (as upstream's timers report them), not the bounds of
// the buckets they fell in, and the percentiles stay within them.
func TestHistogramExtremes(t *testing.T) {
	reg := prometheus.NewRegistry()
	fam, err := NewMetricFamilies(reg, "ghostunnel")
	if err != nil {
		t.Fatal(err)
	}
	m := fam.For("a", "server")
	for _, v := range []float64{1.003, 1.004, 2.002, 2.002} {
		m.lifetime.Observe(v)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			if g := mt.GetGauge(); g != nil {
				got[mf.GetName()] = g.GetValue()
			}
		}
	}
	if got["ghostunnel_conn_lifetime_min_seconds"] != 1.003 || got["ghostunnel_conn_lifetime_max_seconds"] != 2.002 {
		t.Fatalf("lifetime extremes %v / %v, want 1.003 / 2.002", got["ghostunnel_conn_lifetime_min_seconds"], got["ghostunnel_conn_lifetime_max_seconds"])
	}
	if _, ok := got["ghostunnel_conn_handshake_min_seconds"]; ok {
		t.Fatal("extremes of a histogram with no observation")
	}
}
