package yamux

import (
	"bytes"
	"io"
	"sync"
	"testing"
	"time"
)

// budgetPair returns a client and a server session over TCP loopback; the
// server's streams draw on budget.
func budgetPair(t *testing.T, budget *Budget) (*Session, *Session) {
	t.Helper()
	cc, sc := testConnTCP(t)
	// As porthole runs it: no keepalive pings, and writes that may wait
	// for a budget to make room.
	conf := testConfNoKeepAlive()
	conf.ConnectionWriteTimeout = 30 * time.Second
	conf.MaxStreamWindowSize = 4 << 20
	sconf := conf.Clone()
	sconf.RecvBudget = budget
	client, err := Client(cc, conf)
	if err != nil {
		t.Fatal(err)
	}
	server, err := Server(sc, sconf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// waitSteady waits until f stops changing for a while and returns it.
func waitSteady(t *testing.T, f func() int64) int64 {
	t.Helper()
	last, same := f(), 0
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		if v := f(); v == last {
			if same++; same == 25 {
				return v
			}
		} else {
			last, same = v, 0
		}
	}
	t.Fatal("the value did not settle")
	return 0
}

// TestBudgetBoundsStalledReaders: 40 streams whose readers stop after the
// first bytes while the peer writes 16 MiB into each. Upstream yamux
// buffered a full window per stream (160 MiB); with a budget, the total
// stays within it, and when the readers come back every byte arrives.
func TestBudgetBoundsStalledReaders(t *testing.T) {
	const streams, size = 40, 16 << 20
	budget := NewBudget(16 << 20)
	client, server := budgetPair(t, budget)
	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	var wg sync.WaitGroup
	for range streams {
		st, err := client.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.Write(payload)
			st.CloseWrite()
		}()
	}
	var accepted []*Stream
	for range streams {
		st, err := server.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1000)
		if _, err := io.ReadFull(st, buf); err != nil {
			t.Fatal(err)
		}
		accepted = append(accepted, st)
	}
	buffered := waitSteady(t, budget.Buffered)
	if buffered > budget.Limit()+256<<10 {
		t.Fatalf("%d bytes buffered for stalled readers, budget %d", buffered, budget.Limit())
	}
	if c := budget.Credit(); c > budget.Limit()/2 {
		t.Fatalf("window credit %d, more than half the budget %d", c, budget.Limit())
	}
	t.Logf("stalled: %d bytes buffered, %d credit", buffered, budget.Credit())

	// Nothing was dropped: the readers get all of it.
	var rg sync.WaitGroup
	for _, st := range accepted {
		rg.Add(1)
		go func() {
			defer rg.Done()
			n, err := io.Copy(io.Discard, st)
			if err != nil || n != size-1000 {
				t.Errorf("stream %d: read %d more bytes, %v; want %d", st.StreamID(), n, err, size-1000)
			}
			st.Close()
		}()
	}
	rg.Wait()
	wg.Wait()
	if got := waitSteady(t, budget.Credit); got != 0 {
		t.Fatalf("%d bytes of credit still taken after every stream closed", got)
	}
	if got := budget.Buffered(); got != 0 {
		t.Fatalf("%d bytes still counted as buffered", got)
	}
}

// TestBudgetReleasedBySessionEnd: what a session's streams still buffer
// when it ends is given back, so a budget cannot leak away.
func TestBudgetReleasedBySessionEnd(t *testing.T) {
	budget := NewBudget(16 << 20)
	client, server := budgetPair(t, budget)
	st, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	go st.Write(make([]byte, 1<<20))
	rs, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	if got := waitSteady(t, budget.Buffered); got == 0 {
		t.Fatal("nothing buffered")
	}
	_ = rs
	server.Close()
	if got := budget.Buffered(); got != 0 {
		t.Fatalf("%d bytes counted after the session ended", got)
	}
}

// TestCloseDropsAndResets: a stream closed by its reader while the peer
// still sends drops what it buffered and resets the stream, instead of
// buffering up to a window until StreamCloseTimeout as upstream did.
func TestCloseDropsAndResets(t *testing.T) {
	budget := NewBudget(16 << 20)
	client, server := budgetPair(t, budget)
	st, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := st.Write(make([]byte, 64<<20))
		werr <- err
	}()
	rs, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(rs, make([]byte, 1000))
	rs.Close()
	select {
	case err := <-werr:
		if err == nil {
			t.Fatal("the writer was not told that the stream is gone")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the writer still blocks after the reader closed")
	}
	if got := waitSteady(t, budget.Buffered); got != 0 {
		t.Fatalf("%d bytes still buffered for a closed stream", got)
	}
	if n := waitSteady(t, func() int64 { return int64(server.NumStreams()) }); n != 0 {
		t.Fatalf("%d streams kept after the reset", n)
	}
}

// TestBudgetWaitIsNotLoss: a budget smaller than what is in flight makes
// a session's data wait, not vanish; it moves on as readers drain.
func TestBudgetWaitIsNotLoss(t *testing.T) {
	budget := NewBudget(1 << 20)
	client, server := budgetPair(t, budget)
	const streams, size = 8, 8 << 20
	for range streams {
		st, err := client.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			st.Write(bytes.Repeat([]byte{7}, size))
			st.CloseWrite()
		}()
	}
	var wg sync.WaitGroup
	for range streams {
		rs, err := server.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(200 * time.Millisecond) // let the budget fill first
			n, err := io.Copy(io.Discard, rs)
			if err != nil || n != size {
				t.Errorf("read %d, %v; want %d", n, err, size)
			}
		}()
	}
	wg.Wait()
}

// TestCreditReturnedWhenDrainedAfterClose: a reader that drains a stream
// after the peer closed it (the stream already forgotten by the session)
// takes no credit that nothing would give back.
func TestCreditReturnedWhenDrainedAfterClose(t *testing.T) {
	budget := NewBudget(64 << 20)
	client, server := budgetPair(t, budget)
	st, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	go func() {
		st.Write(make([]byte, size))
		st.CloseWrite()
	}()
	rs, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	// Read slowly in small pieces, so that the peer keeps running out of
	// window and the stream keeps asking for more.
	buf := make([]byte, 4<<10)
	var n int64
	for {
		k, err := rs.Read(buf)
		n += int64(k)
		if err != nil {
			break
		}
	}
	if n != size {
		t.Fatalf("read %d of %d", n, size)
	}
	st.Close()
	rs.Close()
	if got := waitSteady(t, budget.Credit); got != 0 {
		t.Fatalf("%d bytes of credit still taken", got)
	}
}
