package testserver

import (
	"bytes"
	"net"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// DropProxy listens on a free loopback port and forwards to addr. After
// it has seen a client chunk holding after (at once if after is empty),
// the first chunk holding trigger is forwarded and the connection dropped
// before the reply, as a network fault would: the command ran, its reply
// is lost. It returns the proxy's address.
func DropProxy(t *testing.T, addr, after, trigger string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var armed, fired atomic.Bool
	armed.Store(after == "")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			srv, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				return
			}
			var drop atomic.Bool
			go func() {
				buf := make([]byte, 1<<16)
				for {
					n, err := srv.Read(buf)
					if n > 0 {
						if drop.Load() {
							c.Close()
							srv.Close()
							return
						}
						_, _ = c.Write(buf[:n])
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
			go func() {
				buf := make([]byte, 1<<16)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						chunk := buf[:n]
						if armed.Load() && bytes.Contains(chunk, []byte(trigger)) && fired.CompareAndSwap(false, true) {
							drop.Store(true)
						}
						if after != "" && bytes.Contains(chunk, []byte(after)) {
							armed.Store(true)
						}
						_, _ = srv.Write(chunk)
					}
					if err != nil {
						srv.Close()
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}
