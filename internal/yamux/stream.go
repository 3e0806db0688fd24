package yamux

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

type streamState int

const (
	streamInit streamState = iota
	streamSYNSent
	streamSYNReceived
	streamEstablished
	streamLocalClose
	streamRemoteClose
	streamClosed
	streamReset
)

// Stream is used to represent a logical stream
// within a session.
type Stream struct {
	recvWindow uint32
	sendWindow uint32

	id      uint32
	session *Session

	state     streamState
	stateLock sync.Mutex

	recvBuf  recvBuf
	recvLock sync.Mutex
	// target is the receive window the stream grows towards
	// MaxStreamWindowSize; credit is the part of it above
	// initialStreamWindow, taken from the session's budget. starved is
	// set when the peer used up the window since the last update.
	// discard is set by Close: nobody reads any more. released is set
	// when the credit went back for good: the peer sends nothing more.
	// All under recvLock.
	target   uint32
	credit   uint32
	starved  bool
	discard  bool
	released bool

	// inbound marks a stream the peer opened (under the session's
	// streamLock).
	inbound bool

	controlHdr     header
	controlErr     chan error
	controlHdrLock sync.Mutex

	sendHdr  header
	sendErr  chan error
	sendLock sync.Mutex

	recvNotifyCh chan struct{}
	// onPeerDone is OnPeerDone's hook, under stateLock.
	onPeerDone   func()
	sendNotifyCh chan struct{}

	readDeadline  atomic.Value // time.Time
	writeDeadline atomic.Value // time.Time

	// establishCh is notified if the stream is established or being closed.
	establishCh chan struct{}

	// closeTimer is set with stateLock held to honor the StreamCloseTimeout
	// setting on Session.
	closeTimer *time.Timer
}

// newStream is used to construct a new stream within
// a given session for an ID
func newStream(session *Session, id uint32, state streamState) *Stream {
	s := &Stream{
		id:           id,
		session:      session,
		state:        state,
		controlHdr:   header(make([]byte, headerSize)),
		controlErr:   make(chan error, 1),
		sendHdr:      header(make([]byte, headerSize)),
		sendErr:      make(chan error, 1),
		recvWindow:   initialStreamWindow,
		sendWindow:   initialStreamWindow,
		target:       initialStreamWindow,
		recvNotifyCh: make(chan struct{}, 1),
		sendNotifyCh: make(chan struct{}, 1),
		establishCh:  make(chan struct{}, 1),
	}
	s.readDeadline.Store(time.Time{})
	s.writeDeadline.Store(time.Time{})
	return s
}

// Session returns the associated stream session
func (s *Stream) Session() *Session {
	return s.session
}

// StreamID returns the ID of this stream
func (s *Stream) StreamID() uint32 {
	return s.id
}

// Read is used to read from the stream
func (s *Stream) Read(b []byte) (n int, err error) {
	defer asyncNotify(s.recvNotifyCh)
START:

	// If the stream is closed and there's no data buffered, return EOF
	s.stateLock.Lock()
	switch s.state {
	case streamLocalClose:
		// LocalClose only prohibits further local writes. Handle reads normally.
	case streamRemoteClose:
		fallthrough
	case streamClosed:
		s.recvLock.Lock()
		if s.discard {
			s.recvLock.Unlock()
			s.stateLock.Unlock()
			return 0, ErrStreamClosed
		}
		if s.recvBuf.Len() == 0 {
			s.recvLock.Unlock()
			s.stateLock.Unlock()
			return 0, io.EOF
		}
		s.recvLock.Unlock()
	case streamReset:
		s.stateLock.Unlock()
		return 0, ErrConnectionReset
	}
	s.stateLock.Unlock()

	// If there is no data available, block
	s.recvLock.Lock()
	if s.discard {
		s.recvLock.Unlock()
		return 0, ErrStreamClosed
	}
	if s.recvBuf.Len() == 0 {
		s.recvLock.Unlock()
		goto WAIT
	}

	// Read any bytes
	n = s.recvBuf.Read(b)
	s.recvLock.Unlock()
	s.session.budget.sub(n)

	// Send a window update potentially. Its error is not this read's:
	// the bytes were read, and a session that failed ends the stream, so
	// the next read reports it.
	s.sendWindowUpdate()
	return n, nil

WAIT:
	var timeout <-chan time.Time
	var timer *time.Timer
	readDeadline := s.readDeadline.Load().(time.Time)
	if !readDeadline.IsZero() {
		delay := time.Until(readDeadline)
		timer = time.NewTimer(delay)
		timeout = timer.C
	}
	select {
	case <-s.session.shutdownCh:
	case <-s.recvNotifyCh:
	case <-timeout:
		return 0, ErrTimeout
	}
	if timer != nil {
		if !timer.Stop() {
			<-timeout
		}
	}
	goto START
}

// Write is used to write to the stream
func (s *Stream) Write(b []byte) (n int, err error) {
	s.sendLock.Lock()
	defer s.sendLock.Unlock()
	total := 0
	for total < len(b) {
		n, err := s.write(b[total:])
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// write is used to write to the stream, may return on
// a short write.
func (s *Stream) write(b []byte) (n int, err error) {
	var flags uint16
	var max uint32
	var body []byte
START:
	s.stateLock.Lock()
	switch s.state {
	case streamLocalClose:
		fallthrough
	case streamClosed:
		s.stateLock.Unlock()
		return 0, ErrStreamClosed
	case streamReset:
		s.stateLock.Unlock()
		return 0, ErrConnectionReset
	}
	s.stateLock.Unlock()

	// If there is no data available, block
	window := atomic.LoadUint32(&s.sendWindow)
	if window == 0 {
		goto WAIT
	}

	// Determine the flags if any
	flags = s.sendFlags()

	// Send up to our send window
	max = min(window, uint32(len(b)))
	body = b[:max]

	// Send the header
	s.sendHdr.encode(typeData, flags, s.id, max)
	if err = s.session.waitForSendErr(s.sendHdr, body, s.sendErr); err != nil {
		if errors.Is(err, ErrSessionShutdown) || errors.Is(err, ErrConnectionWriteTimeout) {
			// Message left in ready queue, header re-use is unsafe.
			s.sendHdr = header(make([]byte, headerSize))
		}
		return 0, err
	}

	// Reduce our send window
	atomic.AddUint32(&s.sendWindow, ^uint32(max-1))

	// Unlock
	return int(max), err

WAIT:
	var timeout <-chan time.Time
	var timer *time.Timer
	writeDeadline := s.writeDeadline.Load().(time.Time)
	if !writeDeadline.IsZero() {
		delay := time.Until(writeDeadline)
		timer = time.NewTimer(delay)
		timeout = timer.C
	}
	select {
	case <-s.session.shutdownCh:
	case <-s.sendNotifyCh:
	case <-timeout:
		return 0, ErrTimeout
	}
	if timer != nil {
		if !timer.Stop() {
			<-timeout
		}
	}
	goto START
}

// sendFlags determines any flags that are appropriate
// based on the current stream state
func (s *Stream) sendFlags() uint16 {
	s.stateLock.Lock()
	defer s.stateLock.Unlock()
	var flags uint16
	switch s.state {
	case streamInit:
		flags |= flagSYN
		s.state = streamSYNSent
	case streamSYNReceived:
		flags |= flagACK
		s.state = streamEstablished
	}
	return flags
}

// sendWindowUpdate potentially sends a window update enabling
// further writes to take place. Must be invoked with the lock.
func (s *Stream) sendWindowUpdate() error {
	s.controlHdrLock.Lock()
	defer s.controlHdrLock.Unlock()

	// Determine the flags first: the lock order is stateLock, then
	// recvLock (Read and processFlags take them so), and sendFlags takes
	// stateLock. Flags are never dropped: with any flag set the update is
	// always sent.
	flags := s.sendFlags()

	// Determine the delta update
	s.recvLock.Lock()
	if s.discard {
		s.recvLock.Unlock()
		if flags == 0 {
			return nil
		}
		// Nobody reads: send the flags and no credit.
		return s.sendControl(flags, 0)
	}
	// Grow the window while the peer keeps using all of it: then the
	// window, not our reader, limits the stream. Streams that carry small
	// messages stay at the initial window and take nothing from the
	// budget.
	if max := s.session.config.MaxStreamWindowSize; s.starved && s.target < max && !s.released {
		got := s.session.budget.takeCredit(min(s.target, max-s.target))
		s.target += got
		s.credit += got
	}
	s.starved = false
	bufLen := uint32(s.recvBuf.Len())
	var delta uint32
	if s.target > bufLen+s.recvWindow {
		delta = s.target - bufLen - s.recvWindow
	}

	// Check if we can omit the update
	if delta < (s.target/2) && flags == 0 {
		s.recvLock.Unlock()
		return nil
	}

	// Update our window
	s.recvWindow += delta
	s.recvLock.Unlock()

	return s.sendControl(flags, delta)
}

// sendControl sends a window update with flags and delta. The caller
// holds controlHdrLock.
func (s *Stream) sendControl(flags uint16, delta uint32) error {
	s.controlHdr.encode(typeWindowUpdate, flags, s.id, delta)
	if err := s.session.waitForSendErr(s.controlHdr, nil, s.controlErr); err != nil {
		if errors.Is(err, ErrSessionShutdown) || errors.Is(err, ErrConnectionWriteTimeout) {
			// Message left in ready queue, header re-use is unsafe.
			s.controlHdr = header(make([]byte, headerSize))
		}
		return err
	}
	return nil
}

// sendClose is used to send a FIN
func (s *Stream) sendClose() error {
	s.controlHdrLock.Lock()
	defer s.controlHdrLock.Unlock()

	flags := s.sendFlags()
	flags |= flagFIN
	s.controlHdr.encode(typeWindowUpdate, flags, s.id, 0)
	if err := s.session.waitForSendErr(s.controlHdr, nil, s.controlErr); err != nil {
		if errors.Is(err, ErrSessionShutdown) || errors.Is(err, ErrConnectionWriteTimeout) {
			// Message left in ready queue, header re-use is unsafe.
			s.controlHdr = header(make([]byte, headerSize))
		}
		return err
	}
	return nil
}

// Close closes the stream both ways, as net.Conn's Close does: nothing
// more is read, what is buffered is dropped, and data that still arrives
// resets the stream. Upstream yamux's Close only half-closed, so a stream
// closed by its reader kept buffering what the peer sent, up to the whole
// window, until StreamCloseTimeout.
func (s *Stream) Close() error {
	s.recvLock.Lock()
	s.discard = true
	n := s.recvBuf.reset()
	s.recvLock.Unlock()
	s.session.budget.sub(n)
	return s.CloseWrite()
}

// CloseWrite half-closes the stream: the peer reads EOF after the data
// written so far, and this side can still read until the peer's own close.
func (s *Stream) CloseWrite() error {
	closeStream := false
	s.stateLock.Lock()
	switch s.state {
	// Opened means we need to signal a close
	case streamSYNSent:
		fallthrough
	case streamSYNReceived:
		fallthrough
	case streamEstablished:
		s.state = streamLocalClose
		goto SEND_CLOSE

	case streamLocalClose:
	case streamRemoteClose:
		s.state = streamClosed
		closeStream = true
		goto SEND_CLOSE

	case streamClosed:
	case streamReset:
	default:
		panic("unhandled state")
	}
	s.stateLock.Unlock()
	return nil
SEND_CLOSE:
	// This shouldn't happen (the more realistic scenario to cancel the
	// timer is via processFlags) but just in case this ever happens, we
	// cancel the timer to prevent dangling timers.
	if s.closeTimer != nil {
		s.closeTimer.Stop()
		s.closeTimer = nil
	}

	// If we have a StreamCloseTimeout set we start the timeout timer.
	// We do this only if we're not already closing the stream since that
	// means this was a graceful close.
	//
	// This prevents memory leaks if one side (this side) closes and the
	// remote side poorly behaves and never responds with a FIN to complete
	// the close. After the specified timeout, we clean our resources up no
	// matter what.
	if !closeStream && s.session.config.StreamCloseTimeout > 0 {
		s.closeTimer = time.AfterFunc(
			s.session.config.StreamCloseTimeout, s.closeTimeout)
	}

	s.stateLock.Unlock()
	s.sendClose()
	s.notifyWaiting()
	if closeStream {
		s.session.closeStream(s.id)
	}
	return nil
}

// closeTimeout is called after StreamCloseTimeout during a close to
// close this stream.
func (s *Stream) closeTimeout() {
	// Close our side forcibly
	s.forceClose()

	// Free the stream from the session map
	s.session.closeStream(s.id)

	// Send a RST so the remote side closes too.
	s.sendLock.Lock()
	defer s.sendLock.Unlock()
	hdr := header(make([]byte, headerSize))
	hdr.encode(typeWindowUpdate, flagRST, s.id, 0)
	_ = s.session.sendNoWait(hdr)
}

// forceClose is used for when the session is exiting
func (s *Stream) forceClose() {
	s.stateLock.Lock()
	s.state = streamClosed
	s.peerDone()
	s.stateLock.Unlock()
	s.notifyWaiting()
	s.releaseCredit()
}

// OnPeerDone has f called once when the peer will send nothing more on
// the stream (FIN, RST, or the session's end), or at once if that
// happened already; f must not block. The returned stop drops f. An HTTP
// forwarder uses it to cancel a request whose visitor left without
// reading the stream.
func (s *Stream) OnPeerDone(f func()) (stop func()) {
	s.stateLock.Lock()
	switch s.state {
	case streamRemoteClose, streamClosed, streamReset:
		s.stateLock.Unlock()
		f()
		return func() {}
	}
	s.onPeerDone = f
	s.stateLock.Unlock()
	return func() {
		s.stateLock.Lock()
		s.onPeerDone = nil
		s.stateLock.Unlock()
	}
}

// peerDone runs the OnPeerDone hook; the caller holds stateLock.
func (s *Stream) peerDone() {
	if f := s.onPeerDone; f != nil {
		s.onPeerDone = nil
		f()
	}
}

// releaseCredit gives the stream's window credit back to the budget: the
// peer sends nothing more on it.
func (s *Stream) releaseCredit() {
	s.recvLock.Lock()
	c := s.credit
	s.credit = 0
	s.released = true
	s.recvLock.Unlock()
	s.session.budget.giveCredit(c)
}

// processFlags is used to update the state of the stream
// based on set flags, if any. Lock must be held
func (s *Stream) processFlags(flags uint16) error {
	// The session's stream map is updated after the state lock is
	// released: Session.Close holds the map's lock while it takes each
	// stream's state lock, so the other order could deadlock.
	closeStream, establish := false, false
	defer func() {
		if establish {
			s.session.establishStream(s.id)
		}
		if closeStream {
			s.session.closeStream(s.id)
		}
	}()
	s.stateLock.Lock()
	defer s.stateLock.Unlock()
	defer func() {
		if closeStream && s.closeTimer != nil {
			// Stop our close timeout timer since we gracefully closed
			s.closeTimer.Stop()
		}
	}()

	if flags&flagACK == flagACK {
		if s.state == streamSYNSent {
			s.state = streamEstablished
		}
		asyncNotify(s.establishCh)
		establish = true
	}
	if flags&flagFIN == flagFIN {
		switch s.state {
		case streamSYNSent:
			fallthrough
		case streamSYNReceived:
			fallthrough
		case streamEstablished:
			s.state = streamRemoteClose
			s.notifyWaiting()
			s.peerDone()
		case streamLocalClose:
			s.state = streamClosed
			closeStream = true
			s.notifyWaiting()
			s.peerDone()
		default:
			s.session.logger.Printf("[ERR] yamux: unexpected FIN flag in state %d", s.state)
			return ErrUnexpectedFlag
		}
	}
	if flags&flagRST == flagRST {
		s.state = streamReset
		closeStream = true
		s.notifyWaiting()
		s.peerDone()
	}
	return nil
}

// notifyWaiting notifies all the waiting channels
func (s *Stream) notifyWaiting() {
	asyncNotify(s.recvNotifyCh)
	asyncNotify(s.sendNotifyCh)
	asyncNotify(s.establishCh)
}

// incrSendWindow updates the size of our send window
func (s *Stream) incrSendWindow(hdr header, flags uint16) error {
	if err := s.processFlags(flags); err != nil {
		return err
	}

	// Increase window, unblock a sender
	atomic.AddUint32(&s.sendWindow, hdr.Length())
	asyncNotify(s.sendNotifyCh)
	return nil
}

// readData is used to handle a data frame
func (s *Stream) readData(hdr header, flags uint16, conn io.Reader) error {
	if err := s.processFlags(flags); err != nil {
		return err
	}

	// Check that our recv window is not exceeded
	length := hdr.Length()
	if length == 0 {
		return nil
	}

	// Past the budget, the session's data waits here, unread: its
	// peer's writes stall, nothing is dropped, memory stays bounded.
	if !s.session.budget.waitRoom(int64(length), s.session.shutdownCh) {
		return ErrSessionShutdown
	}

	// Copy into buffer
	s.recvLock.Lock()

	if length > s.recvWindow {
		s.session.logger.Printf("[ERR] yamux: receive window exceeded (stream: %d, remain: %d, recv: %d)", s.id, s.recvWindow, length)
		s.recvLock.Unlock()
		return ErrRecvWindowExceeded
	}

	if s.discard {
		// Closed by its reader: drop the data and reset the stream, so
		// the peer stops sending.
		s.recvLock.Unlock()
		if _, err := io.CopyN(io.Discard, conn, int64(length)); err != nil {
			return err
		}
		s.reset()
		return nil
	}
	copiedLength, err := s.recvBuf.readFrom(conn, int(length))
	s.session.budget.add(copiedLength)
	if err != nil {
		s.session.logger.Printf("[ERR] yamux: Failed to read stream data: %v", err)
		s.recvLock.Unlock()
		return err
	}

	// Decrement the receive window
	s.recvWindow -= uint32(copiedLength)
	if s.recvWindow < s.target/8 {
		s.starved = true
	}
	s.recvLock.Unlock()

	// Unblock any readers
	asyncNotify(s.recvNotifyCh)
	return nil
}

// SetDeadline sets the read and write deadlines
func (s *Stream) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	if err := s.SetWriteDeadline(t); err != nil {
		return err
	}
	return nil
}

// SetReadDeadline sets the deadline for blocked and future Read calls.
func (s *Stream) SetReadDeadline(t time.Time) error {
	s.readDeadline.Store(t)
	asyncNotify(s.recvNotifyCh)
	return nil
}

// SetWriteDeadline sets the deadline for blocked and future Write calls
func (s *Stream) SetWriteDeadline(t time.Time) error {
	s.writeDeadline.Store(t)
	asyncNotify(s.sendNotifyCh)
	return nil
}

// Shrink is used to compact the amount of buffers utilized
// This is useful when using Yamux in a connection pool to reduce
// the idle memory utilization.
//
// The receive buffer already returns its chunks as they are read, so there
// is nothing left to compact; Shrink stays for callers of upstream's API.
func (s *Stream) Shrink() {}

// reset sends a RST and forgets the stream, once.
func (s *Stream) reset() {
	s.stateLock.Lock()
	if s.state == streamReset {
		s.stateLock.Unlock()
		return
	}
	s.state = streamReset
	if s.closeTimer != nil {
		s.closeTimer.Stop()
		s.closeTimer = nil
	}
	s.stateLock.Unlock()
	s.notifyWaiting()
	s.session.closeStream(s.id)
	hdr := header(make([]byte, headerSize))
	hdr.encode(typeWindowUpdate, flagRST, s.id, 0)
	_ = s.session.sendNoWait(hdr)
}
