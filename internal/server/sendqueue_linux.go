package server

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// sendQueue returns the bytes c's kernel send queue holds that the peer
// has not acknowledged yet, or -1 when it cannot tell.
func sendQueue(c net.Conn) int {
	sc, ok := c.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return -1
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	q := -1
	raw.Control(func(fd uintptr) {
		if n, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err == nil {
			q = n
		}
	})
	return q
}
