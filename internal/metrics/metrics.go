// Package metrics exports a Prometheus registry in the two forms porthole
// serves: Prometheus text (via client_golang's promhttp) and a JSON
// snapshot for people without Prometheus. The counters themselves live
// beside the state they count, in the packages that own that state.
package metrics

import (
	"encoding/json"
	"math"
	"net/http"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Document is the JSON snapshot served at /api/metrics by the server's
// admin listener and by the client's local API.
type Document struct {
	Families []Family `json:"families"`
}

// Family is one metric family in a JSON snapshot.
type Family struct {
	Name    string   `json:"name"`
	Help    string   `json:"help"`
	Type    string   `json:"type"`
	Metrics []Sample `json:"metrics"`
}

// Sample is one labelled value. Histograms report count, sum and
// cumulative buckets keyed by upper bound.
type Sample struct {
	Labels  map[string]string  `json:"labels,omitempty"`
	Value   *float64           `json:"value,omitempty"`
	Count   *uint64            `json:"count,omitempty"`
	Sum     *float64           `json:"sum,omitempty"`
	Buckets map[string]float64 `json:"buckets,omitempty"`
}

// Snapshot gathers g into families sorted by name.
func Snapshot(g prometheus.Gatherer) ([]Family, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, err
	}
	out := make([]Family, 0, len(mfs))
	for _, mf := range mfs {
		f := Family{Name: mf.GetName(), Help: mf.GetHelp(), Type: typeName(mf.GetType())}
		for _, m := range mf.GetMetric() {
			s := Sample{}
			if len(m.GetLabel()) > 0 {
				s.Labels = make(map[string]string, len(m.GetLabel()))
				for _, l := range m.GetLabel() {
					s.Labels[l.GetName()] = l.GetValue()
				}
			}
			switch {
			case m.Counter != nil:
				s.Value = finite(m.Counter.GetValue())
			case m.Gauge != nil:
				s.Value = finite(m.Gauge.GetValue())
			case m.Untyped != nil:
				s.Value = finite(m.Untyped.GetValue())
			case m.Histogram != nil:
				h := m.Histogram
				c, sum := h.GetSampleCount(), h.GetSampleSum()
				s.Count, s.Sum = &c, finite(sum)
				s.Buckets = make(map[string]float64, len(h.GetBucket()))
				for _, b := range h.GetBucket() {
					s.Buckets[formatBound(b.GetUpperBound())] = float64(b.GetCumulativeCount())
				}
				// client_golang leaves the +Inf bucket implicit; the text
				// format shows it, and so does the snapshot.
				if _, ok := s.Buckets["+Inf"]; !ok {
					s.Buckets["+Inf"] = float64(c)
				}
			case m.Summary != nil:
				c, sum := m.Summary.GetSampleCount(), m.Summary.GetSampleSum()
				s.Count, s.Sum = &c, finite(sum)
			}
			f.Metrics = append(f.Metrics, s)
		}
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// JSONHandler serves Snapshot(g) as JSON.
func JSONHandler(g prometheus.Gatherer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fams, err := Snapshot(g)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(Document{Families: fams})
	})
}

// TextHandler serves g in the Prometheus text format.
func TextHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

func typeName(t dto.MetricType) string {
	switch t {
	case dto.MetricType_COUNTER:
		return "counter"
	case dto.MetricType_GAUGE:
		return "gauge"
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		return "histogram"
	case dto.MetricType_SUMMARY:
		return "summary"
	}
	return "untyped"
}

// finite keeps NaN and infinities out of JSON, which cannot encode them.
func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func formatBound(b float64) string {
	if math.IsInf(b, 1) {
		return "+Inf"
	}
	bs, _ := json.Marshal(b)
	return string(bs)
}
