package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pires/go-proxyproto"
)

// TestTCP drives `porthole tcp` with the built binary: real clients (pgx
// against PostgreSQL), a binary framed protocol, a GiB each way, half-close,
// one local connection per visitor, the PROXY protocol header, and the
// refusals of --remote-port.
func TestTCP(t *testing.T) {
	srv := startTCPServer(t)
	echo := startTCPApp(t, tcpEcho)

	t.Run("RemotePortOutsideRange", func(t *testing.T) {
		for _, port := range []int{srv.lo - 1, srv.hi + 1} {
			out, errOut, code := runPorthole(t, "tcp", echo.port(), "--server", srv.wsURL(), "--inspect-addr", "off",
				"--remote-port", strconv.Itoa(port))
			if code != 1 || !strings.Contains(errOut, fmt.Sprintf("port %d is outside", port)) {
				t.Errorf("--remote-port %d outside %d-%d: %s", port, srv.lo, srv.hi, coreDescribe(code, out, errOut))
			}
			if strings.Contains(out, "Forwarding") {
				t.Errorf("--remote-port %d: a refused tunnel printed a Forwarding line", port)
			}
		}
	})

	t.Run("RemotePortTaken", func(t *testing.T) {
		port := strconv.Itoa(srv.lo)
		holder := startTCPTunnel(t, srv.serverProc, echo.port(), "--remote-port", port)
		if holder.url != "tcp://localhost:"+port {
			t.Fatalf("--remote-port %s got %s", port, holder.url)
		}
		if line := firstForwardingLine(holder.out()); !strings.HasSuffix(line, "-> tcp://localhost:"+echo.port()) {
			t.Errorf("Forwarding line %q does not name the local target", line)
		}
		out, errOut, code := runPorthole(t, "tcp", echo.port(), "--server", srv.wsURL(), "--inspect-addr", "off", "--remote-port", port)
		if code != 1 || !strings.Contains(errOut, "port "+port+" is in use") {
			t.Errorf("a second client asking for port %s: %s", port, coreDescribe(code, out, errOut))
		}
		// The holder still serves.
		tcpWaitEcho(t, holder.public, 5*time.Second)
	})

	t.Run("PostgreSQL", func(t *testing.T) { tcpPostgres(t, srv) })
	t.Run("BinaryFrames", func(t *testing.T) { tcpBinaryFrames(t, srv) })
	t.Run("GiBEachWay", func(t *testing.T) { tcpGiB(t, srv) })
	t.Run("HalfClose", func(t *testing.T) { tcpHalfClose(t, srv) })
	t.Run("ConnectionPerVisitor", func(t *testing.T) { tcpConnectionPerVisitor(t, srv) })
	t.Run("ProxyProtocolV2", func(t *testing.T) { tcpProxyProtocol(t, srv) })
}

// tcpPostgres reaches a real PostgreSQL server through a tunnel with pgx:
// several connections at once, COPY in, a large result out.
func tcpPostgres(t *testing.T, srv *tcpServer) {
	dbURL := postgresURL(t, "the TCP tunnel test")
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	tun := startTCPTunnel(t, srv.serverProc, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	host, port, _ := net.SplitHostPort(tun.public)
	p, _ := strconv.Atoi(port)
	cfg.Host, cfg.Port, cfg.Fallbacks = host, uint16(p), nil

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const conns = 4
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.ConnectConfig(ctx, cfg.Copy())
			if err != nil {
				t.Errorf("connection %d through the tunnel: %v", i, err)
				return
			}
			defer conn.Close(ctx)
			var one int
			if err := conn.QueryRow(ctx, "SELECT $1::int", 1).Scan(&one); err != nil || one != 1 {
				t.Errorf("connection %d: SELECT 1: %d, %v", i, one, err)
				return
			}
			table := fmt.Sprintf("tunnel_rows_%d", i)
			if _, err := conn.Exec(ctx, "CREATE TEMP TABLE "+table+" (id int, payload bytea)"); err != nil {
				t.Errorf("connection %d: %v", i, err)
				return
			}
			rows := make([][]any, 2000)
			var want int64
			for j := range rows {
				payload := bytes.Repeat([]byte{byte(j)}, 100+j%300)
				rows[j] = []any{j, payload}
				want += int64(len(payload))
			}
			n, err := conn.CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "payload"}, pgx.CopyFromRows(rows))
			if err != nil || n != int64(len(rows)) {
				t.Errorf("connection %d: COPY %d rows: %d, %v", i, len(rows), n, err)
				return
			}
			var total int64
			if err := conn.QueryRow(ctx, "SELECT sum(length(payload)) FROM "+table).Scan(&total); err != nil || total != want {
				t.Errorf("connection %d: sum = %d, want %d (%v)", i, total, want, err)
			}
			// A result larger than any buffer on the way.
			var big string
			if err := conn.QueryRow(ctx, "SELECT repeat('porthole', 500000)").Scan(&big); err != nil || len(big) != 4_000_000 {
				t.Errorf("connection %d: 4 MB result: %d bytes, %v", i, len(big), err)
			}
		}()
	}
	wg.Wait()
	// Each connection was a visitor stream the client forwarded.
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(tun.errOut(), "tcp connection") < conns && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := strings.Count(tun.errOut(), "tcp connection"); n < conns {
		t.Errorf("the client logged %d forwarded connections, want %d", n, conns)
	}
}

// tcpBinaryFrames is an SSH-like exchange: banners, then length-prefixed
// random binary frames written and read at the same time, on several
// connections at once.
func tcpBinaryFrames(t *testing.T, srv *tcpServer) {
	const banner = "SSH-2.0-porthole_test\r\n"
	app := startTCPApp(t, func(c net.Conn) {
		io.WriteString(c, banner)
		br := bufio.NewReader(c)
		if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "SSH-2.0-") {
			return
		}
		// Echo each frame whole: length, then payload.
		var hdr [4]byte
		for {
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				c.(*net.TCPConn).CloseWrite()
				return
			}
			frame := make([]byte, 4+binary.BigEndian.Uint32(hdr[:]))
			copy(frame, hdr[:])
			if _, err := io.ReadFull(br, frame[4:]); err != nil {
				return
			}
			if _, err := c.Write(frame); err != nil {
				return
			}
		}
	})
	tun := startTCPTunnel(t, srv.serverProc, app.port())

	const conns, frames = 4, 300
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := tcpDial(t, tun.public)
			c.SetDeadline(time.Now().Add(60 * time.Second))
			br := bufio.NewReader(c)
			if line, err := br.ReadString('\n'); err != nil || line != banner {
				t.Errorf("conn %d: banner %q, %v", i, line, err)
				return
			}
			sums := make(chan [32]byte, frames)
			errc := make(chan error, 1)
			go func() {
				rng := mrand.New(mrand.NewPCG(uint64(i), 7))
				src := mrand.NewChaCha8([32]byte{byte(i)})
				if _, err := io.WriteString(c, "SSH-2.0-visitor\r\n"); err != nil {
					errc <- err
					return
				}
				for range frames {
					n := rng.IntN(32 << 10)
					if rng.IntN(10) == 0 {
						n = rng.IntN(8) // tiny frames too, like keystrokes
					}
					frame := make([]byte, 4+n)
					binary.BigEndian.PutUint32(frame, uint32(n))
					src.Read(frame[4:])
					sums <- sha256.Sum256(frame[4:])
					if _, err := c.Write(frame); err != nil {
						errc <- err
						return
					}
				}
				errc <- c.CloseWrite()
			}()
			var hdr [4]byte
			for f := range frames {
				if _, err := io.ReadFull(br, hdr[:]); err != nil {
					t.Errorf("conn %d frame %d: %v", i, f, err)
					return
				}
				payload := make([]byte, binary.BigEndian.Uint32(hdr[:]))
				if _, err := io.ReadFull(br, payload); err != nil {
					t.Errorf("conn %d frame %d: %v", i, f, err)
					return
				}
				if sha256.Sum256(payload) != <-sums {
					t.Errorf("conn %d frame %d (%d bytes): corrupted", i, f, len(payload))
					return
				}
			}
			if err := <-errc; err != nil {
				t.Errorf("conn %d: write: %v", i, err)
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Errorf("conn %d: after the last frame: %d bytes, %v", i, len(rest), err)
			}
		}()
	}
	wg.Wait()
}

// tcpGiBSize is what crosses the tunnel in each direction.
func tcpGiBSize() int64 {
	if testing.Short() {
		return 64 << 20
	}
	return 1 << 30
}

// tcpGiB streams a GiB each way at the same time and compares SHA-256
// digests of what each side sent and received.
func tcpGiB(t *testing.T, srv *tcpServer) {
	size := tcpGiBSize()
	type digest struct {
		sent, received [32]byte
		n              int64
		err            error
	}
	appDone := make(chan digest, 1)
	app := startTCPApp(t, func(c net.Conn) {
		var d digest
		sent := make(chan [32]byte, 1)
		go func() {
			h := sha256.New()
			io.Copy(io.MultiWriter(c, h), io.LimitReader(mrand.NewChaCha8([32]byte{2}), size))
			c.(*net.TCPConn).CloseWrite()
			sent <- [32]byte(h.Sum(nil))
		}()
		h := sha256.New()
		d.n, d.err = io.Copy(h, c)
		d.received = [32]byte(h.Sum(nil))
		d.sent = <-sent
		appDone <- d
	})
	tun := startTCPTunnel(t, srv.serverProc, app.port())

	c := tcpDial(t, tun.public)
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	start := time.Now()
	sent := make(chan [32]byte, 1)
	go func() {
		h := sha256.New()
		io.Copy(io.MultiWriter(c, h), io.LimitReader(mrand.NewChaCha8([32]byte{1}), size))
		c.CloseWrite()
		sent <- [32]byte(h.Sum(nil))
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil || n != size {
		t.Fatalf("visitor received %d of %d bytes: %v", n, size, err)
	}
	visitorSent := <-sent
	var d digest
	select {
	case d = <-appDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the local app never saw the end of the upload")
	}
	if d.err != nil || d.n != size {
		t.Fatalf("app received %d of %d bytes: %v", d.n, size, d.err)
	}
	if [32]byte(h.Sum(nil)) != d.sent {
		t.Error("download: SHA-256 of what the visitor received differs from what the app sent")
	}
	if d.received != visitorSent {
		t.Error("upload: SHA-256 of what the app received differs from what the visitor sent")
	}
	t.Logf("%d MiB each way in %s", size>>20, time.Since(start).Round(time.Millisecond))
}

// tcpHalfClose: either side may end its sending and still receive.
func tcpHalfClose(t *testing.T, srv *tcpServer) {
	appGot := make(chan string, 1)
	app := startTCPApp(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		mode, _ := br.ReadString('\n')
		switch mode {
		case "visitor-first\n":
			// Read to the visitor's end of data, then answer.
			n, _ := io.Copy(io.Discard, br)
			fmt.Fprintf(c, "received %d bytes after your close", n)
		case "app-first\n":
			// End our side at once, then keep reading.
			io.WriteString(c, "app is done sending")
			c.(*net.TCPConn).CloseWrite()
			rest, _ := io.ReadAll(br)
			appGot <- string(rest)
		}
	})
	tun := startTCPTunnel(t, srv.serverProc, app.port())

	// The visitor closes its write side first and still gets the reply.
	c := tcpDial(t, tun.public)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "visitor-first\n")
	c.Write(bytes.Repeat([]byte("x"), 1<<20))
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != fmt.Sprintf("received %d bytes after your close", 1<<20) {
		t.Errorf("reply after the visitor's half-close: %q, %v", reply, err)
	}

	// The app closes its write side first; the visitor sees the end of
	// data and can still send.
	c = tcpDial(t, tun.public)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "app-first\n")
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "app is done sending" {
		t.Fatalf("before the app's end of data: %q, %v", got, err)
	}
	if _, err := io.WriteString(c, "visitor still talking"); err != nil {
		t.Fatalf("write after the app's half-close: %v", err)
	}
	c.CloseWrite()
	select {
	case s := <-appGot:
		if s != "visitor still talking" {
			t.Errorf("the app received %q after its half-close", s)
		}
	case <-time.After(10 * time.Second):
		t.Error("the app never received the visitor's bytes after its half-close")
	}
}

// tcpConnectionPerVisitor: each visitor connection is a connection of its
// own to the local app; closing one leaves the others working.
func tcpConnectionPerVisitor(t *testing.T, srv *tcpServer) {
	var mu sync.Mutex
	seq := 0
	app := startTCPApp(t, func(c net.Conn) {
		mu.Lock()
		seq++
		mine := seq
		mu.Unlock()
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			fmt.Fprintf(c, "local conn %d: %s\n", mine, sc.Text())
		}
	})
	tun := startTCPTunnel(t, srv.serverProc, app.port())

	const visitors = 10
	conns := make([]*net.TCPConn, visitors)
	readers := make([]*bufio.Reader, visitors)
	seen := make(map[string]int)
	ask := func(i int, msg string) string {
		t.Helper()
		conns[i].SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conns[i], "%s\n", msg)
		line, err := readers[i].ReadString('\n')
		if err != nil {
			t.Fatalf("visitor %d: %v", i, err)
		}
		local, rest, _ := strings.Cut(strings.TrimSpace(line), ": ")
		if rest != msg {
			t.Fatalf("visitor %d got %q, want its own %q", i, line, msg)
		}
		return local
	}
	for i := range visitors {
		conns[i] = tcpDial(t, tun.public)
		readers[i] = bufio.NewReader(conns[i])
	}
	locals := make([]string, visitors)
	for i := range visitors {
		locals[i] = ask(i, fmt.Sprintf("visitor %d", i))
		seen[locals[i]]++
	}
	if len(seen) != visitors || app.accepted.Load() != visitors {
		t.Fatalf("%d visitors used %d local connections (app accepted %d)", visitors, len(seen), app.accepted.Load())
	}
	conns[3].Close()
	for _, i := range []int{0, 5, 9} {
		if got := ask(i, fmt.Sprintf("visitor %d again", i)); got != locals[i] {
			t.Errorf("visitor %d moved from %s to %s", i, locals[i], got)
		}
	}
}

// tcpProxyProtocol: with --proxy-protocol v2, the local app reads a PROXY
// v2 header naming the visitor's address and the public port it reached,
// then the visitor's bytes unchanged.
func tcpProxyProtocol(t *testing.T, srv *tcpServer) {
	headers := make(chan *proxyproto.Header, 1)
	app := startTCPApp(t, func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		h, err := proxyproto.Read(br)
		if err != nil {
			io.WriteString(c, "no PROXY header: "+err.Error())
			return
		}
		headers <- h
		c.SetReadDeadline(time.Time{})
		io.Copy(c, br)
	})
	tun := startTCPTunnel(t, srv.serverProc, app.port(), "--proxy-protocol", "v2")

	c := tcpDial(t, tun.public)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "payload after the header")
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "payload after the header" {
		t.Fatalf("echo behind the PROXY header: %q, %v", got, err)
	}
	h := <-headers
	if h.Version != 2 || h.Command != proxyproto.PROXY || h.TransportProtocol != proxyproto.TCPv4 {
		t.Fatalf("header: version %d, command %v, protocol %v", h.Version, h.Command, h.TransportProtocol)
	}
	src, dst, ok := h.TCPAddrs()
	if !ok || src.String() != c.LocalAddr().String() || dst.String() != tun.public {
		t.Errorf("header says %v -> %v; the visitor was %v -> %s", src, dst, c.LocalAddr(), tun.public)
	}
}

// TestTCPServerKilledAndRestarted: kill -9 the server and start it again;
// the running client reconnects and gets its (randomly chosen) port back.
func TestTCPServerKilledAndRestarted(t *testing.T) {
	srv := startTCPServer(t)
	echo := startTCPApp(t, tcpEcho)
	tun := startTCPTunnel(t, srv.serverProc, echo.port(), "--reconnect-max", "1s")
	tcpWaitEcho(t, tun.public, 10*time.Second)

	if code := srv.signal(t, syscall.SIGKILL, 10*time.Second); code != -int(syscall.SIGKILL) {
		t.Fatalf("server exit after SIGKILL: %d", code)
	}
	if err := tcpTryEcho(tun.public); err == nil {
		t.Fatal("the port still answered with the server killed")
	}
	srv.restart(t)
	tcpWaitEcho(t, tun.public, 30*time.Second)
	select {
	case <-tun.done:
		t.Fatalf("the client exited during the restart: %v\n%s", tun.err, tun.errOut())
	default:
	}
	for _, u := range tun.forwardingURLs(t, 1) {
		if u != tun.url {
			t.Errorf("the client printed %q after the restart, want %q", u, tun.url)
		}
	}
}
