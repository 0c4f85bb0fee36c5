package config

import (
	"strings"
	"testing"
	"time"
)

func TestBusyPollKey(t *testing.T) {
	tests := []struct {
		name string
		line string // under [server]; "" leaves the key out
		want time.Duration
		err  string // substring of the error, "" for none
	}{
		{name: "default off", want: 0},
		{name: "microseconds", line: `busy_poll = "50us"`, want: 50 * time.Microsecond},
		{name: "micro sign", line: `busy_poll = "20µs"`, want: 20 * time.Microsecond},
		{name: "zero", line: `busy_poll = "0"`, want: 0},
		{name: "the bound", line: `busy_poll = "1ms"`, want: time.Millisecond},
		{name: "above the bound", line: `busy_poll = "2ms"`, err: "server.busy_poll: must be between 0 and 1ms, not 2ms"},
		{name: "negative", line: `busy_poll = "-5us"`, err: "server.busy_poll: must be between 0 and 1ms"},
		{name: "bare number", line: `busy_poll = 30`, err: `server.busy_poll: must be a duration with its unit, such as "50us"`},
		{name: "no unit", line: `busy_poll = "30"`, err: `server.busy_poll: "30" is not a duration`},
		{name: "wrong type", line: `busy_poll = true`, err: "server.busy_poll: must be a duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := "[server]\n" + tt.line + "\n"
			c, err := Parse("t.toml", []byte(text), t.TempDir())
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				if !strings.Contains(err.Error(), "t.toml:2:") {
					t.Errorf("error does not name the file and line: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Server.BusyPoll != tt.want {
				t.Errorf("BusyPoll = %v, want %v", c.Server.BusyPoll, tt.want)
			}
		})
	}
}
