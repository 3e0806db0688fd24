package metrics

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// testRegistry holds one metric of every kind the server and client
// export, with known values.
func testRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "t_requests_total", Help: "Requests."})
	c.Add(7)
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "t_bytes_total", Help: "Bytes by direction."}, []string{"direction"})
	cv.WithLabelValues("in").Add(100)
	cv.WithLabelValues("out").Add(2500)
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "t_sessions", Help: "Sessions."})
	g.Set(3)
	nan := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "t_ratio", Help: "Undefined ratio."}, func() float64 { return math.NaN() })
	inf := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "t_limit", Help: "No limit."}, func() float64 { return math.Inf(1) })
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "t_duration_seconds", Help: "Latency.", Buckets: []float64{0.005, 0.1, 1}})
	for _, v := range []float64{0.001, 0.05, 0.05, 0.5, 3} {
		h.Observe(v)
	}
	sum := prometheus.NewSummary(prometheus.SummaryOpts{Name: "t_size_bytes", Help: "Sizes."})
	sum.Observe(10)
	sum.Observe(30)
	u := prometheus.NewUntypedFunc(prometheus.UntypedOpts{Name: "t_untyped", Help: "Untyped."}, func() float64 { return 42 })
	reg.MustRegister(c, cv, g, nan, inf, h, sum, u)
	return reg
}

func byName(t *testing.T, fams []Family) map[string]Family {
	t.Helper()
	out := map[string]Family{}
	for _, f := range fams {
		out[f.Name] = f
	}
	return out
}

func TestSnapshot(t *testing.T) {
	fams, err := Snapshot(testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(fams); i++ {
		if fams[i-1].Name >= fams[i].Name {
			t.Errorf("families not sorted: %s before %s", fams[i-1].Name, fams[i].Name)
		}
	}
	m := byName(t, fams)
	if len(m) != 8 {
		t.Errorf("%d families, want 8", len(m))
	}
	val := func(s Sample) float64 {
		if s.Value == nil {
			t.Fatalf("sample %+v has no value", s)
		}
		return *s.Value
	}

	if f := m["t_requests_total"]; f.Type != "counter" || f.Help != "Requests." || len(f.Metrics) != 1 || val(f.Metrics[0]) != 7 || f.Metrics[0].Labels != nil {
		t.Errorf("counter %+v", f)
	}
	got := map[string]float64{}
	for _, s := range m["t_bytes_total"].Metrics {
		got[s.Labels["direction"]] = val(s)
	}
	if len(got) != 2 || got["in"] != 100 || got["out"] != 2500 {
		t.Errorf("counter vector %v", got)
	}
	if f := m["t_sessions"]; f.Type != "gauge" || val(f.Metrics[0]) != 3 {
		t.Errorf("gauge %+v", f)
	}
	if f := m["t_untyped"]; f.Type != "untyped" || val(f.Metrics[0]) != 42 {
		t.Errorf("untyped %+v", f)
	}
	// JSON cannot carry NaN or infinities: the value is left out.
	for _, name := range []string{"t_ratio", "t_limit"} {
		if f := m[name]; len(f.Metrics) != 1 || f.Metrics[0].Value != nil {
			t.Errorf("%s: %+v, want a sample without a value", name, f)
		}
	}

	h := m["t_duration_seconds"]
	if h.Type != "histogram" || len(h.Metrics) != 1 {
		t.Fatalf("histogram %+v", h)
	}
	hs := h.Metrics[0]
	if hs.Value != nil || hs.Count == nil || *hs.Count != 5 || hs.Sum == nil || math.Abs(*hs.Sum-3.601) > 1e-9 {
		t.Errorf("histogram count/sum %+v", hs)
	}
	wantBuckets := map[string]float64{"0.005": 1, "0.1": 3, "1": 4, "+Inf": 5}
	if len(hs.Buckets) != len(wantBuckets) {
		t.Errorf("buckets %v, want %v", hs.Buckets, wantBuckets)
	}
	for k, v := range wantBuckets {
		if got, ok := hs.Buckets[k]; !ok || got != v {
			t.Errorf("bucket %s = %v (present %v), want %v", k, got, ok, v)
		}
	}

	s := m["t_size_bytes"]
	if s.Type != "summary" || s.Metrics[0].Count == nil || *s.Metrics[0].Count != 2 || *s.Metrics[0].Sum != 40 {
		t.Errorf("summary %+v", s)
	}
}

func TestSnapshotError(t *testing.T) {
	bad := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return nil, errors.New("collector broke") })
	if _, err := Snapshot(bad); err == nil {
		t.Fatal("Snapshot ignored a gather error")
	}
	rec := httptest.NewRecorder()
	JSONHandler(bad).ServeHTTP(rec, httptest.NewRequest("GET", "/api/metrics", nil))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "collector broke") {
		t.Errorf("JSONHandler on a gather error: %d %q", rec.Code, rec.Body.String())
	}
}

func TestJSONHandler(t *testing.T) {
	reg := testRegistry(t)
	rec := httptest.NewRecorder()
	JSONHandler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/api/metrics", nil))
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("%d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	// The document is valid JSON (no NaN) and round-trips into Family.
	var doc struct {
		Families []Family `json:"families"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, rec.Body.String())
	}
	direct, _ := Snapshot(reg)
	if len(doc.Families) != len(direct) {
		t.Fatalf("%d families over HTTP, %d from Snapshot", len(doc.Families), len(direct))
	}
	m := byName(t, doc.Families)
	if v := m["t_bytes_total"].Metrics; len(v) != 2 || v[0].Labels["direction"] == "" {
		t.Errorf("labels lost: %+v", v)
	}
	if strings.Contains(rec.Body.String(), `"value": null`) {
		t.Errorf("missing values are encoded as null:\n%s", rec.Body.String())
	}
}

// TestTextAndJSONAgree checks that the Prometheus text and the JSON
// snapshot of one registry carry the same families and values.
func TestTextAndJSONAgree(t *testing.T) {
	reg := testRegistry(t)
	rec := httptest.NewRecorder()
	TextHandler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
		t.Fatalf("%d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	text, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	fams, err := Snapshot(reg)
	if err != nil {
		t.Fatal(err)
	}
	js := byName(t, fams)
	if len(text) != len(js) {
		t.Errorf("%d families in text, %d in JSON", len(text), len(js))
	}
	for name, tf := range text {
		jf, ok := js[name]
		if !ok {
			t.Errorf("%s missing from JSON", name)
			continue
		}
		if !strings.EqualFold(jf.Type, tf.GetType().String()) || jf.Help != tf.GetHelp() || len(jf.Metrics) != len(tf.GetMetric()) {
			t.Errorf("%s: JSON %s %q %d series; text %v %q %d", name, jf.Type, jf.Help, len(jf.Metrics), tf.GetType(), tf.GetHelp(), len(tf.GetMetric()))
			continue
		}
		for i, m := range tf.GetMetric() {
			s := jf.Metrics[i]
			for _, l := range m.GetLabel() {
				if s.Labels[l.GetName()] != l.GetValue() {
					t.Errorf("%s series %d: label %s=%q, JSON %v", name, i, l.GetName(), l.GetValue(), s.Labels)
				}
			}
			var want float64
			switch {
			case m.Counter != nil:
				want = m.GetCounter().GetValue()
			case m.Gauge != nil:
				want = m.GetGauge().GetValue()
			case m.Untyped != nil:
				want = m.GetUntyped().GetValue()
			case m.Histogram != nil:
				h := m.GetHistogram()
				if *s.Count != h.GetSampleCount() || *s.Sum != h.GetSampleSum() {
					t.Errorf("%s: count/sum %d/%v, JSON %d/%v", name, h.GetSampleCount(), h.GetSampleSum(), *s.Count, *s.Sum)
				}
				// The text format always ends with the +Inf bucket.
				for _, b := range h.GetBucket() {
					k := formatBound(b.GetUpperBound())
					if s.Buckets[k] != float64(b.GetCumulativeCount()) {
						t.Errorf("%s bucket %s: text %d, JSON %v", name, k, b.GetCumulativeCount(), s.Buckets[k])
					}
				}
				continue
			case m.Summary != nil:
				if *s.Count != m.GetSummary().GetSampleCount() {
					t.Errorf("%s: count %d, JSON %d", name, m.GetSummary().GetSampleCount(), *s.Count)
				}
				continue
			}
			if math.IsNaN(want) || math.IsInf(want, 0) {
				if s.Value != nil {
					t.Errorf("%s: JSON value %v for %v", name, *s.Value, want)
				}
				continue
			}
			if s.Value == nil || *s.Value != want {
				t.Errorf("%s series %d: text %v, JSON %v", name, i, want, s.Value)
			}
		}
	}
}

func TestFormatBound(t *testing.T) {
	for in, want := range map[float64]string{0.005: "0.005", 1: "1", 2.5: "2.5", 30: "30", math.Inf(1): "+Inf"} {
		if got := formatBound(in); got != want {
			t.Errorf("formatBound(%v) = %q, want %q", in, got, want)
		}
	}
}
