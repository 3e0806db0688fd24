package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// moveApp answers "app" on every path but /slow, which blocks until
// release is called, then answers "slow done".
type moveApp struct {
	port    string
	started chan struct{}
	once    sync.Once
	gate    chan struct{}
}

func startMoveApp(t *testing.T) *moveApp {
	t.Helper()
	a := &moveApp{started: make(chan struct{}, 16), gate: make(chan struct{})}
	t.Cleanup(a.release)
	a.port = portOf(serveApp(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			a.started <- struct{}{}
			<-a.gate
			io.WriteString(w, "slow done")
			return
		}
		io.WriteString(w, "app")
	})}))
	return a
}

func (a *moveApp) release() { a.once.Do(func() { close(a.gate) }) }

// tunnelURL is the URL of subdomain sub at server s.
func (s *serverProc) tunnelURL(sub string) string {
	return fmt.Sprintf("http://%s.localhost:%s", sub, portOf(s.httpAddr))
}

// term sends SIGTERM without waiting for the process to exit.
func (s *serverProc) term(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// exitCode waits for the server to exit and returns its code.
func (s *serverProc) exitCode(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(within):
		t.Fatalf("server did not exit within %s after SIGTERM", within)
	}
	return s.cmd.ProcessState.ExitCode()
}

var inspectURLRE = regexp.MustCompile(`request inspector.*url=(http://[0-9.:]+)`)

// clientStatus reads a client's /api/status.
type clientStatus struct {
	State string `json:"state"`
	Links []struct {
		Link     int    `json:"link"`
		Server   string `json:"server"`
		State    string `json:"state"`
		Draining string `json:"draining"`
	} `json:"links"`
}

func (p *proc) status(t *testing.T) clientStatus {
	t.Helper()
	base := p.wait(t, p.errOut, inspectURLRE, 10*time.Second)[1]
	var st clientStatus
	resp, err := http.Get(base + "/api/status")
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&st)
	return st
}

// linksOn reports how many of the client's links are online at server url.
func (st clientStatus) linksOn(url string) int {
	n := 0
	for _, l := range st.Links {
		if l.State == "online" && l.Server == url {
			n++
		}
	}
	return n
}

// load is visitors sending requests in a loop against one URL, counting
// answers that are not 200 "app".
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	firstFail  string
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(t *testing.T, s *serverProc, url string, visitors int) *load {
	l := &load{stop: make(chan struct{})}
	for range visitors {
		c := visitorClient(t, s.httpAddr, "", 2, 20*time.Second)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := c.Get(url)
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				if err == nil && resp.StatusCode == 200 && string(body) == "app" {
					l.ok.Add(1)
					continue
				}
				l.failed.Add(1)
				l.mu.Lock()
				if l.firstFail == "" {
					if err != nil {
						l.firstFail = err.Error()
					} else {
						l.firstFail = fmt.Sprintf("%d %q", resp.StatusCode, body)
					}
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) end() (ok, failed int64, first string) {
	close(l.stop)
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load(), l.firstFail
}
