package link

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// BenchmarkHop measures one forwarded hop against the same handler
// served directly, in the same run: small requests (req/s, p99) from 16
// concurrent visitors and a bulk download (MB/s). "h2" is the same hop
// over HTTP/2 on the same TLS identity, the transport this link did not
// take (it cannot carry upgrades without extended CONNECT); it is
// measured for the comparison. Ratios are printed at the end:
//
//	go test -run '^$' -bench BenchmarkHop -benchtime 3s ./internal/cluster/link
func BenchmarkHop(b *testing.B) {
	bulk := bytes.Repeat([]byte("x"), 16<<20)
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bulk" {
			w.Header().Set("Content-Length", fmt.Sprint(len(bulk)))
			w.Write(bulk)
			return
		}
		io.WriteString(w, "hello, small world")
	})
	direct := httptest.NewServer(app)
	defer direct.Close()

	h := newHolder(app)
	srv := NewServer(testSecret, h, nil)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)
	defer srv.Shutdown(b.Context())
	d := NewDialer(testSecret, "bench", nil)
	defer d.Close()
	addr := l.Addr().String()
	linked := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.ForwardHTTP(w, r, addr, "app.example.test", 1)
	}))
	defer linked.Close()

	h2 := newH2Hop(b, app)
	defer h2.close()

	type result struct{ rps, p99, mbps float64 }
	res := map[string]*result{}
	for _, target := range []struct {
		name string
		url  string
	}{{"direct", direct.URL}, {"link", linked.URL}, {"h2", h2.front.URL}} {
		r := &result{}
		res[target.name] = r
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
		b.Run("small/"+target.name, func(b *testing.B) {
			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism(8) // 16 visitors on 2 cores
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					t0 := time.Now()
					resp, err := c.Get(target.url + "/small")
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			el := time.Since(start)
			slices.Sort(lat)
			r.rps = float64(b.N) / el.Seconds()
			r.p99 = float64(lat[len(lat)*99/100].Microseconds())
			b.ReportMetric(r.rps, "req/s")
			b.ReportMetric(r.p99, "p99-µs")
		})
		b.Run("bulk/"+target.name, func(b *testing.B) {
			b.SetBytes(int64(len(bulk)))
			start := time.Now()
			for i := 0; i < b.N; i++ {
				resp, err := c.Get(target.url + "/bulk")
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if n != int64(len(bulk)) {
					b.Fatalf("%d bytes", n)
				}
			}
			r.mbps = float64(b.N) * float64(len(bulk)) / 1e6 / time.Since(start).Seconds()
		})
		c.CloseIdleConnections()
	}
	dr := res["direct"]
	for _, name := range []string{"link", "h2"} {
		r := res[name]
		if dr.rps == 0 || r.rps == 0 || dr.mbps == 0 {
			continue
		}
		fmt.Printf("hop over %-4s vs direct: small req/s %.0f vs %.0f = %.2fx; p99 %.0f µs vs %.0f µs = %.2fx; bulk %.0f vs %.0f MB/s = %.2fx\n",
			name, r.rps, dr.rps, r.rps/dr.rps, r.p99, dr.p99, r.p99/dr.p99, r.mbps, dr.mbps, r.mbps/dr.mbps)
	}
}

// h2Hop is the alternative transport, for comparison only: the holder
// serves HTTP/2 over TLS with the cluster identity and the forwarding
// node proxies with http2.Transport.
type h2Hop struct {
	holder *http.Server
	l      net.Listener
	front  *httptest.Server
	tr     *http2.Transport
}

func newH2Hop(b *testing.B, app http.Handler) *h2Hop {
	id, err := deriveIdentity(testSecret)
	if err != nil {
		b.Fatal(err)
	}
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) != 1 || !id.pub.Equal(cs.PeerCertificates[0].PublicKey) {
			return errPeerIdentity
		}
		return nil
	}
	sc := id.serverConfig()
	sc.NextProtos = []string{"h2"}
	sc.VerifyConnection = verify
	cc := id.clientConfig()
	cc.NextProtos = []string{"h2"}
	cc.VerifyConnection = verify
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	hs := &http.Server{Handler: app, TLSConfig: sc}
	http2.ConfigureServer(hs, &http2.Server{})
	go hs.ServeTLS(l, "", "")
	tr := &http2.Transport{TLSClientConfig: cc}
	u, _ := url.Parse("https://" + l.Addr().String())
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.Out.Host = pr.In.Host },
		Transport: tr,
	}
	return &h2Hop{holder: hs, l: l, front: httptest.NewServer(rp), tr: tr}
}

func (h *h2Hop) close() {
	h.front.Close()
	h.tr.CloseIdleConnections()
	h.holder.Close()
}
