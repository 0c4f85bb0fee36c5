package isns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultTimeout bounds one exchange with the server when the caller sets
// no other: connecting, sending the request and receiving the response.
const DefaultTimeout = 10 * time.Second

// Client talks to one iSNS server over TCP (RFC 4171 2.2.4: iSNSP runs
// over TCP or UDP; TCP carries messages of any length). It keeps one
// connection open between exchanges and opens a new one when the last
// failed. Exchanges are serialized; each is bounded by the client's
// timeout and by the caller's context. Safe for concurrent use.
type Client struct {
	addr    string
	timeout time.Duration
	dialer  net.Dialer

	// sem is held for a whole exchange (a mutex that a context can give
	// up waiting for). It guards nextXID and the use of conn.
	sem     chan struct{}
	nextXID uint16

	mu   sync.Mutex  // guards conn, closed
	conn *serverConn // nil when not connected
	// closed is set by Close; no connection is opened after it.
	closed bool
}

// serverConn is one TCP connection and the goroutine that reads it.
type serverConn struct {
	nc    net.Conn
	local netip.Addr
	msgs  chan Message  // responses, from the reader
	done  chan struct{} // closed when the reader stops
	err   error         // why the reader stopped; valid once done is closed
	once  sync.Once
}

// NewClient makes a client for the server at addr ("host:port"). timeout
// bounds every exchange; 0 means DefaultTimeout. It connects on first use.
func NewClient(addr string, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{addr: addr, timeout: timeout, sem: make(chan struct{}, 1)}
}

// Addr is the server's address.
func (c *Client) Addr() string { return c.addr }

// errClosed is returned by a client after Close.
var errClosed = errors.New("isns: client closed")

// Close closes the connection; later exchanges fail.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	conn := c.conn
	c.conn = nil
	c.mu.Unlock()
	if conn != nil {
		conn.close()
	}
	return nil
}

// Lost returns a channel that is closed when the current connection to
// the server ends (the server closed it, restarted or became unreachable),
// or nil when there is no connection. A registration then needs checking.
// A connection found dead is forgotten, so that its end is reported once.
func (c *Client) Lost() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	done := c.conn.done
	select {
	case <-done:
		c.conn.close()
		c.conn = nil
	default:
	}
	return done
}

func (c *Client) acquire(ctx context.Context) error {
	select {
	case c.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) release() { <-c.sem }

// Dial connects unless connected and returns the local address of the
// connection: the address through which the server reaches this host,
// which Registration uses in place of a wildcard portal address.
func (c *Client) Dial(ctx context.Context) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.acquire(ctx); err != nil {
		return netip.Addr{}, fmt.Errorf("iSNS server %s: %w", c.addr, err)
	}
	defer c.release()
	conn, err := c.connect(ctx)
	if err != nil {
		return netip.Addr{}, err
	}
	return conn.local, nil
}

// connect returns the open connection, or opens one. The caller holds sem.
func (c *Client) connect(ctx context.Context) (*serverConn, error) {
	c.mu.Lock()
	conn, closed := c.conn, c.closed
	c.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	if conn != nil {
		select {
		case <-conn.done:
			c.drop(conn) // the server went away while we were idle
		default:
			return conn, nil
		}
	}
	nc, err := c.dialer.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, fmt.Errorf("connect to iSNS server: %w", err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetKeepAlive(true)
	}
	conn = &serverConn{nc: nc, msgs: make(chan Message, 8), done: make(chan struct{})}
	if ap, err := netip.ParseAddrPort(nc.LocalAddr().String()); err == nil {
		conn.local = ap.Addr().Unmap()
	}
	go conn.read()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		conn.close()
		return nil, errClosed
	}
	c.conn = conn
	c.mu.Unlock()
	return conn, nil
}

// drop forgets conn (if it is still the current one) and closes it.
func (c *Client) drop(conn *serverConn) {
	c.mu.Lock()
	if c.conn == conn {
		c.conn = nil
	}
	c.mu.Unlock()
	conn.close()
}

// read delivers every response on the connection to msgs until the
// connection fails. Requests from the server (ESI, SCN) are not expected
// on a connection the client opened and are ignored.
func (sc *serverConn) read() {
	mr := NewMessageReader(bufio.NewReader(sc.nc))
	for {
		m, err := mr.ReadMessage()
		if err != nil {
			sc.err = err
			close(sc.done)
			return
		}
		if !m.Function.IsResponse() {
			continue
		}
		// Exchange waits on msgs from before it sends until its response
		// arrives; the buffer covers the moments it spends skipping a
		// stray response. Beyond it nobody is waiting: drop, so the reader
		// keeps reading and sees the connection end.
		select {
		case sc.msgs <- m:
		default:
		}
	}
}

func (sc *serverConn) close() { sc.once.Do(func() { sc.nc.Close() }) }

// Exchange sends req and returns the server's response. An error is a
// transport or protocol failure (the connection is then closed, and the
// next exchange opens a new one); a response with a non-success status is
// returned without error (see Response.Err).
func (c *Client) Exchange(ctx context.Context, req Request) (Response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.exchange(ctx, req)
	if err != nil {
		return Response{}, fmt.Errorf("iSNS %v to %s: %w", req.Function, c.addr, err)
	}
	return resp, nil
}

func (c *Client) exchange(ctx context.Context, req Request) (Response, error) {
	if err := c.acquire(ctx); err != nil {
		return Response{}, err
	}
	defer c.release()
	conn, err := c.connect(ctx)
	if err != nil {
		return Response{}, err
	}
	c.nextXID++
	xid := c.nextXID
	wire, err := AppendMessage(nil, req.Message(xid))
	if err != nil {
		return Response{}, err
	}
	deadline, _ := ctx.Deadline()
	conn.nc.SetWriteDeadline(deadline)
	if _, err := conn.nc.Write(wire); err != nil {
		c.drop(conn)
		return Response{}, err
	}
	for {
		select {
		case m := <-conn.msgs:
			// RFC 4171 5.1.5: the response carries the request's
			// transaction ID. Anything else is a leftover: skip it.
			if m.TransactionID != xid || m.Function != req.Function.Response() {
				continue
			}
			resp, err := ParseResponse(m)
			if err != nil {
				c.drop(conn)
				return Response{}, err
			}
			return resp, nil
		case <-conn.done:
			c.drop(conn)
			if conn.err == nil || errors.Is(conn.err, net.ErrClosed) {
				return Response{}, errors.New("connection closed")
			}
			return Response{}, fmt.Errorf("connection lost: %w", conn.err)
		case <-ctx.Done():
			// The response may still come; a new connection keeps it from
			// being taken for the answer to the next request.
			c.drop(conn)
			return Response{}, fmt.Errorf("no response: %w", ctx.Err())
		}
	}
}
