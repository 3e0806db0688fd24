package link

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
)

// holderProcessEnv makes the test binary run as a holder node in its own
// process, so that a test can SIGKILL it mid-transfer.
const holderProcessEnv = "PORTHOLE_LINK_TEST_HOLDER"

// runHolderProcess serves a link on a loopback port, prints the address
// and serves until killed: /slow sends one chunk and then nothing; TCP
// port 7000 echoes.
func runHolderProcess() {
	h := newHolder(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			w.Write([]byte("first chunk;"))
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
			return
		}
		if r.URL.Path == "/headers-never" {
			<-r.Context().Done()
			return
		}
		io.WriteString(w, "ok")
	}))
	h.tcp = func(c net.Conn) error {
		_, err := io.Copy(c, c)
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println(l.Addr().String())
	s := NewServer(testSecret, h, zap.NewNop())
	s.Serve(l)
}

// startHolderProcess starts the holder in a child process.
func startHolderProcess(t *testing.T) (*exec.Cmd, string) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderProcessEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.HasPrefix(line, "error") {
		t.Fatalf("holder process: %q %v", line, err)
	}
	return cmd, strings.TrimSpace(line)
}

// The holder's process is killed while a response is streaming, while
// another request waits for its headers, and while a TCP connection is
// open: the visitor's download is cut, the waiting visitor gets 502, the
// TCP connection ends, and nothing is left behind (goleak in TestMain).
func TestPeerKilledMidTransfer(t *testing.T) {
	cmd, addr := startHolderProcess(t)
	d := newDialer(t, testSecret)
	f := startFront(t, d, addr, 1)
	c := client(t)

	resp, err := c.Get(f.URL + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("first chunk;"))
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}

	waiting := make(chan *http.Response, 1)
	go func() {
		r, err := c.Get(f.URL + "/headers-never")
		if err != nil {
			t.Error(err)
			r = nil
		}
		waiting <- r
	}()

	tc, err := d.DialTCP(context.Background(), addr, 7000, 1, netip.MustParseAddrPort("198.51.100.7:4242"))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("tcp echo %q %v", buf, err)
	}
	// The waiting request has reached the holder once the server counts it.
	waitFor(t, func() bool { return d.Stats().HTTPOut >= 2 })
	time.Sleep(50 * time.Millisecond) // let it cross the link; the test does not depend on it

	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("the cut download ended cleanly")
	}
	if r := <-waiting; r != nil {
		r.Body.Close()
		if r.StatusCode != http.StatusBadGateway {
			t.Errorf("waiting visitor got %d, want 502", r.StatusCode)
		}
	}
	if _, err := tc.Read(buf); err == nil {
		t.Error("TCP connection survived its holder")
	}

	// Later requests fail fast with 502, and so does DialTCP.
	r2, err := c.Get(f.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusBadGateway {
		t.Fatalf("after the kill: %d", r2.StatusCode)
	}
	if _, err := d.DialTCP(context.Background(), addr, 7000, 1, netip.MustParseAddrPort("198.51.100.7:1")); err == nil || errors.Is(err, ErrStale) {
		t.Fatalf("DialTCP to a dead peer: %v", err)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met in 10 s")
}
