package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// target is what a load phase talks to: the app directly, or the tunnel's
// public listener with the tunnel's Host.
type target struct {
	name string
	// url is what requests are sent to; its host is the Host header.
	url string
	// dial is the TCP address connections go to (the public listener for
	// the tunnel, so that NAME.localhost needs no resolver).
	dial string
}

// newTransport returns a keep-alive HTTP/1.1 client transport that holds
// up to conns connections to t.
func newTransport(t target, conns int) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, t.dial)
		},
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
		ForceAttemptHTTP2:   false,
	}
}

// loadResult is one requests/s phase.
type loadResult struct {
	requests int
	errors   int
	elapsed  time.Duration
	lat      []time.Duration // sorted
}

func (r loadResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// quantile returns the q-quantile of the latencies (nearest rank).
func (r loadResult) quantile(q float64) time.Duration {
	n := len(r.lat)
	if n == 0 {
		return 0
	}
	i := int(float64(n)*q+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= n {
		i = n - 1
	}
	return r.lat[i]
}

// merge adds b's samples to r (rounds of the same phase).
func (r loadResult) merge(b loadResult) loadResult {
	r.requests += b.requests
	r.errors += b.errors
	r.elapsed += b.elapsed
	r.lat = append(r.lat, b.lat...)
	slices.Sort(r.lat)
	return r
}

// runLoad keeps conns connections busy with GET requests for size bytes:
// each connection sends its next request as soon as the previous response
// is read (a closed loop, as wrk does). Requests that start in the warm-up
// are not counted; every counted request's latency is kept, so quantiles
// are exact. atStart and atEnd, when set, run when the measured time
// starts and ends (to read CPU counters, start and stop profiles).
func runLoad(t target, conns, size int, warmup, dur time.Duration, atStart, atEnd func()) loadResult {
	tr := newTransport(t, conns)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := t.url + "/bytes?n=" + strconv.Itoa(size)

	start := time.Now()
	measure := start.Add(warmup)
	end := measure.Add(dur)
	var hooks sync.WaitGroup
	for _, h := range []struct {
		at time.Time
		f  func()
	}{{measure, atStart}, {end, atEnd}} {
		if h.f != nil {
			hooks.Add(1)
			time.AfterFunc(time.Until(h.at), func() { defer hooks.Done(); h.f() })
		}
	}
	defer hooks.Wait()
	type workerResult struct {
		lat    []time.Duration
		errors int
		last   time.Time
	}
	results := make([]workerResult, conns)
	var wg sync.WaitGroup
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func(res *workerResult) {
			defer wg.Done()
			res.lat = make([]time.Duration, 0, 1<<14)
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			for {
				t0 := time.Now()
				if t0.After(end) {
					return
				}
				resp, err := client.Do(req)
				if err != nil {
					if t0.After(measure) {
						res.errors++
					}
					time.Sleep(10 * time.Millisecond)
					continue
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				t1 := time.Now()
				if t0.Before(measure) {
					continue
				}
				if err != nil || resp.StatusCode != http.StatusOK || n != int64(size) {
					res.errors++
					continue
				}
				res.lat = append(res.lat, t1.Sub(t0))
				res.last = t1
			}
		}(&results[w])
	}
	wg.Wait()
	var out loadResult
	last := measure
	for _, r := range results {
		out.lat = append(out.lat, r.lat...)
		out.errors += r.errors
		if r.last.After(last) {
			last = r.last
		}
	}
	out.requests = len(out.lat)
	out.elapsed = last.Sub(measure)
	slices.Sort(out.lat)
	return out
}

// maxEchoSize bounds -ws-size (the app's read limit is 1 MiB).
const maxEchoSize = 1 << 20

// runEcho opens one WebSocket to t's /ws (the app's echo) and sends
// size-byte binary messages on it, each when the echo of the previous one
// has arrived, for warmup then dur. Each counted sample is the time from
// handing a message to the WebSocket to having its whole echo back, and
// the echo must match what was sent. atStart and atEnd run when the
// measured time starts and ends. Any failure ends the phase: a broken
// WebSocket has nothing more to measure.
func runEcho(t target, size int, warmup, dur time.Duration, atStart, atEnd func()) (loadResult, error) {
	tr := newTransport(t, 1)
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), warmup+dur+30*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, t.url+"/ws", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		if resp != nil {
			err = fmt.Errorf("%w (status %s)", err, resp.Status)
		}
		return loadResult{}, fmt.Errorf("websocket to %s: %w", t.name, err)
	}
	defer c.CloseNow()
	c.SetReadLimit(int64(size) + 1)
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = pattern[i%len(pattern)]
	}

	start := time.Now()
	measure := start.Add(warmup)
	end := measure.Add(dur)
	lat := make([]time.Duration, 0, 1<<16)
	var last time.Time
	started := false
	for {
		t0 := time.Now()
		if t0.After(end) {
			break
		}
		if !started && !t0.Before(measure) {
			started = true
			if atStart != nil {
				atStart()
			}
		}
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			return loadResult{}, fmt.Errorf("websocket to %s: write: %w", t.name, err)
		}
		typ, b, err := c.Read(ctx)
		t1 := time.Now()
		if err != nil {
			return loadResult{}, fmt.Errorf("websocket to %s: read: %w", t.name, err)
		}
		if typ != websocket.MessageBinary || !bytes.Equal(b, msg) {
			return loadResult{}, fmt.Errorf("websocket to %s: echo of %d bytes came back different: %d bytes of type %v", t.name, size, len(b), typ)
		}
		if started {
			lat = append(lat, t1.Sub(t0))
			last = t1
		}
	}
	if started && atEnd != nil {
		atEnd()
	}
	if !started {
		return loadResult{}, errors.New("websocket: no message left after the warm-up")
	}
	c.Close(websocket.StatusNormalClosure, "")
	slices.Sort(lat)
	return loadResult{requests: len(lat), elapsed: last.Sub(measure), lat: lat}, nil
}

// transferResult is one large download or upload.
type transferResult struct {
	bytes   int64
	elapsed time.Duration
}

// add sums rounds of the same transfer.
func (r transferResult) add(b transferResult) transferResult {
	return transferResult{r.bytes + b.bytes, r.elapsed + b.elapsed}
}

func (r transferResult) mbps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.bytes) / 1e6 / r.elapsed.Seconds()
}

// download fetches size bytes from the app and discards them as they
// arrive: nothing holds more than one 64 KiB buffer.
func download(t target, size int64) (transferResult, error) {
	tr := newTransport(t, 1)
	defer tr.CloseIdleConnections()
	start := time.Now()
	resp, err := (&http.Client{Transport: tr}).Get(t.url + "/bytes?n=" + strconv.FormatInt(size, 10))
	if err != nil {
		return transferResult{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return transferResult{}, fmt.Errorf("download: %s", resp.Status)
	}
	buf := make([]byte, 64<<10)
	n, err := io.CopyBuffer(io.Discard, onlyReader{resp.Body}, buf)
	el := time.Since(start)
	if err != nil {
		return transferResult{}, fmt.Errorf("download after %d bytes: %w", n, err)
	}
	if n != size {
		return transferResult{}, fmt.Errorf("download: got %d bytes, want %d", n, size)
	}
	return transferResult{bytes: n, elapsed: el}, nil
}

// upload sends size bytes, generated as they are sent, to the app, which
// discards them and answers with the count it read.
func upload(t target, size int64) (transferResult, error) {
	tr := newTransport(t, 1)
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, t.url+"/upload", &patternReader{left: size})
	req.ContentLength = size
	start := time.Now()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return transferResult{}, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 128))
	resp.Body.Close()
	el := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		return transferResult{}, fmt.Errorf("upload: %s: %s", resp.Status, body)
	}
	got, _ := strconv.ParseInt(string(body), 10, 64)
	if got != size {
		return transferResult{}, fmt.Errorf("upload: app read %s bytes, want %d", body, size)
	}
	return transferResult{bytes: size, elapsed: el}, nil
}

// patternReader produces left bytes of a fixed pattern without holding
// more than the caller's buffer.
type patternReader struct{ left int64 }

var pattern = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}()

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	n := 0
	for n < len(b) {
		n += copy(b[n:], pattern)
	}
	p.left -= int64(n)
	return n, nil
}

// onlyReader hides WriterTo so io.CopyBuffer uses the given buffer.
type onlyReader struct{ io.Reader }
