package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// Keys of issue 7: metrics_listen and admin_socket.
func TestOperateKeys(t *testing.T) {
	base := t.TempDir()
	tests := []struct {
		name      string
		server    string
		metrics   string
		adminPath string // AdminSocketPath()
		err       string // substring of the error, "" for none
	}{
		{name: "defaults", adminPath: filepath.Join(base, "blockport-data", "admin.sock")},
		{name: "metrics", server: `metrics_listen = "127.0.0.1:9360"`, metrics: "127.0.0.1:9360",
			adminPath: filepath.Join(base, "blockport-data", "admin.sock")},
		{name: "metrics without port", server: `metrics_listen = "127.0.0.1"`, err: "server.metrics_listen"},
		{name: "metrics wrong type", server: `metrics_listen = 9360`, err: "server.metrics_listen"},
		{name: "admin relative", server: `admin_socket = "run/a.sock"`, adminPath: filepath.Join(base, "run", "a.sock")},
		{name: "admin off", server: `admin_socket = "off"`, adminPath: ""},
		{name: "admin too long", server: `admin_socket = "/` + strings.Repeat("x", 120) + `"`, err: "server.admin_socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := "[server]\n" + tt.server + "\n"
			c, err := Parse("t.toml", []byte(text), base)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one naming %s", err, tt.err)
				}
				if !strings.Contains(err.Error(), "t.toml:") {
					t.Errorf("error does not name the file: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Server.MetricsListen != tt.metrics {
				t.Errorf("MetricsListen = %q, want %q", c.Server.MetricsListen, tt.metrics)
			}
			if got := c.Server.AdminSocketPath(); got != tt.adminPath {
				t.Errorf("AdminSocketPath = %q, want %q", got, tt.adminPath)
			}
		})
	}
}
