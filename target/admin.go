package target

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

// The admin API: HTTP on a Unix socket (server.admin_socket), for
// `blockport status` and `blockport reload`. A Unix socket, not TCP: its
// file mode (0600) decides who may use it, so it needs no credentials of
// its own, and it is never reachable from the network.
//
//	GET  /v1/status  Status as JSON
//	POST /v1/reload  re-read the config file and apply it: ReloadResult

// ReloadResult is the answer to POST /v1/reload.
type ReloadResult struct {
	OK     bool          `json:"ok"`
	Error  string        `json:"error,omitempty"`
	Report *ReloadReport `json:"report,omitempty"`
}

// AdminHandler serves the admin API. reload re-reads the config and applies
// it (cmd owns the config file and the command-line overrides).
func (s *Server) AdminHandler(reload func() (*ReloadReport, error)) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Status())
	})
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, _ *http.Request) {
		rep, err := reload()
		if err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, ReloadResult{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, ReloadResult{OK: true, Report: rep})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// ListenAdmin binds the admin socket at path with mode 0600. A socket file
// left by a server that died is replaced; one that a live server answers on
// is not.
func ListenAdmin(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("admin socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("admin socket %s: another server is listening on it", path)
		}
		os.Remove(path)
	}
	// Create it unreachable to others from the first instant.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return ln, nil
}

// AdminClient talks to a server's admin socket.
type AdminClient struct {
	hc *http.Client
}

// NewAdminClient returns a client of the admin socket at path.
func NewAdminClient(path string) *AdminClient {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &AdminClient{hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// Status fetches the server's status.
func (c *AdminClient) Status() (*Status, error) {
	resp, err := c.hc.Get("http://blockport/v1/status")
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("admin API: %s: %s", resp.Status, b)
	}
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	return &st, nil
}

// Reload asks the server to re-read and apply its config. A config the
// server refused comes back as an error, with nothing changed.
func (c *AdminClient) Reload() (*ReloadReport, error) {
	resp, err := c.hc.Post("http://blockport/v1/reload", "application/json", nil)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	var res ReloadResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return nil, fmt.Errorf("admin API: %s: %w", resp.Status, err)
	}
	if !res.OK {
		return nil, errors.New(res.Error)
	}
	return res.Report, nil
}
