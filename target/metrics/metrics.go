// Package metrics exposes Blockport's counters to Prometheus.
//
// Nothing here runs on the I/O path. Per-command counters are atomics kept
// by the SCSI core (scsi.LU.Stats) and read when Prometheus scrapes; the
// fabric's rare events (logins, task management, rejects) arrive through
// the iscsi.Observer interface, which Metrics implements. The registry is
// the caller's (cmd creates it); this package keeps no globals. Labels are
// bounded: configured target names and LUN numbers, fixed enumerations;
// never initiator ports, ISIDs or CDB bytes.
package metrics

import (
	"net/http"
	"runtime"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/blockport/blockport/target"
	"github.com/blockport/blockport/target/iscsi"
	"github.com/blockport/blockport/target/scsi"
	"github.com/blockport/blockport/target/scsi/sense"
)

// Source is what the collector reads at scrape time; *target.Server
// implements it.
type Source interface {
	Status() target.Status
}

// Metrics collects Blockport's metrics into a registry.
type Metrics struct {
	src Source

	logins  *prometheus.CounterVec
	tmfs    *prometheus.CounterVec
	rejects *prometheus.CounterVec
}

const ns = "blockport"

var (
	descCommands = prometheus.NewDesc(ns+"_scsi_commands_total",
		"SCSI commands completed, by target, LUN and data direction (none, read, write).",
		[]string{"target", "lun", "direction"}, nil)
	descBytes = prometheus.NewDesc(ns+"_scsi_bytes_total",
		"Bytes transferred by successful SCSI commands, by target, LUN and direction.",
		[]string{"target", "lun", "direction"}, nil)
	descLatency = prometheus.NewDesc(ns+"_scsi_command_duration_seconds",
		"Time from a command's arrival to its response, by target, LUN and operation class (read, write, other).",
		[]string{"target", "lun", "class"}, nil)
	descErrors = prometheus.NewDesc(ns+"_scsi_errors_total",
		"Commands that ended with CHECK CONDITION, by target, LUN and sense key.",
		[]string{"target", "lun", "sense_key"}, nil)
	descConflicts = prometheus.NewDesc(ns+"_scsi_reservation_conflicts_total",
		"Commands that ended with RESERVATION CONFLICT.",
		[]string{"target", "lun"}, nil)
	descOtherStatus = prometheus.NewDesc(ns+"_scsi_other_status_total",
		"Commands that ended with another non-GOOD status (BUSY, TASK SET FULL, TASK ABORTED).",
		[]string{"target", "lun"}, nil)
	descCapacity = prometheus.NewDesc(ns+"_backstore_capacity_bytes",
		"Size of the LUN's backstore.",
		[]string{"target", "lun", "backstore"}, nil)
	descAllocated = prometheus.NewDesc(ns+"_backstore_allocated_bytes",
		"Storage the LUN's backstore uses (thin images: what is written); absent when the backstore cannot tell.",
		[]string{"target", "lun", "backstore"}, nil)
	descSessions = prometheus.NewDesc(ns+"_sessions",
		"Open normal sessions, by target.", []string{"target"}, nil)
	descConnections = prometheus.NewDesc(ns+"_connections",
		"Open connections of normal sessions, by target.", []string{"target"}, nil)
	descAllConns = prometheus.NewDesc(ns+"_server_connections",
		"Open TCP connections of the whole server, logins and discovery included.", nil, nil)
	descRefused = prometheus.NewDesc(ns+"_connections_refused_total",
		"Connections closed at once because a connection or login limit was reached.", nil, nil)
	descBusyPolls = prometheus.NewDesc(ns+"_busy_polls_total",
		"Busy polls of an empty connection socket (server.busy_poll), by result: data (data or the connection's end arrived within the budget) or timeout (the reader then waited).",
		[]string{"result"}, nil)
	descLUNs = prometheus.NewDesc(ns+"_luns",
		"Mapped LUNs, by target.", []string{"target"}, nil)
	// [isns] only.
	descISNSRegistrations = prometheus.NewDesc(ns+"_isns_registrations_total",
		"iSNS DevAttrReg requests (registrations and updates), by result (success, failure).", []string{"result"}, nil)
	descISNSRefreshes = prometheus.NewDesc(ns+"_isns_refreshes_total",
		"Checks that the iSNS server still holds the registration (which refresh it), by result (success, failure).", []string{"result"}, nil)
	descISNSRegistered = prometheus.NewDesc(ns+"_isns_registered",
		"1 while the iSNS server holds the registration, as far as Blockport knows.", nil, nil)
)

// New registers Blockport's metrics in reg. version goes into
// blockport_build_info.
func New(reg prometheus.Registerer, src Source, version string) (*Metrics, error) {
	m := &Metrics{
		src: src,
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "logins_total",
			Help: "Login attempts of normal and discovery sessions, by result.",
		}, []string{"result"}),
		tmfs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "task_management_total",
			Help: "Task management requests, by function and response.",
		}, []string{"function", "response"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "pdu_rejects_total",
			Help: "Malformed or unacceptable PDUs, by what the target did (reject, close).",
		}, []string{"action"}),
	}
	// Every login result starts at zero so rate() and alerts see the series.
	for r := iscsi.LoginResult(0); r < iscsi.NumLoginResults; r++ {
		m.logins.WithLabelValues(r.String())
	}
	m.rejects.WithLabelValues("reject")
	m.rejects.WithLabelValues("close")
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: ns, Name: "build_info",
		Help:        "Build of the running server; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	build.Set(1)
	for _, c := range []prometheus.Collector{m, m.logins, m.tmfs, m.rejects, build} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Login implements iscsi.Observer.
func (m *Metrics) Login(r iscsi.LoginResult) { m.logins.WithLabelValues(r.String()).Inc() }

// TaskManagement implements iscsi.Observer.
func (m *Metrics) TaskManagement(function, response uint8) {
	m.tmfs.WithLabelValues(tmfName(function), tmfResponseName(response)).Inc()
}

// PDURejected implements iscsi.Observer.
func (m *Metrics) PDURejected(action string) {
	if action != "reject" {
		action = "close"
	}
	m.rejects.WithLabelValues(action).Inc()
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCommands, descBytes, descLatency, descErrors, descConflicts,
		descOtherStatus, descCapacity, descAllocated, descSessions, descConnections, descAllConns, descRefused, descBusyPolls, descLUNs,
		descISNSRegistrations, descISNSRefreshes, descISNSRegistered} {
		ch <- d
	}
}

// latencyBounds are scsi.LatencyBounds in seconds.
var latencyBounds = func() []float64 {
	out := make([]float64, len(scsi.LatencyBounds))
	for i, b := range scsi.LatencyBounds {
		out[i] = b.Seconds()
	}
	return out
}()

// Collect implements prometheus.Collector: one snapshot of the server.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.src.Status()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, t := range st.Targets {
		gauge(descSessions, float64(len(t.Sessions)), t.Name)
		gauge(descConnections, float64(t.Connections), t.Name)
		gauge(descLUNs, float64(len(t.LUNs)), t.Name)
		for _, l := range t.LUNs {
			lun := strconv.FormatUint(l.LUN, 10)
			s := &l.Stats
			for dir := range scsi.NumDirections {
				name := scsi.Direction(dir).String()
				counter(descCommands, s.Commands[dir], t.Name, lun, name)
				if scsi.Direction(dir) != scsi.DirNone {
					counter(descBytes, s.Bytes[dir], t.Name, lun, name)
				}
			}
			for c := range scsi.NumOpClasses {
				h := s.Latency[c]
				buckets := make(map[float64]uint64, len(latencyBounds))
				var cum uint64
				for i, b := range latencyBounds {
					cum += h.Counts[i]
					buckets[b] = cum
				}
				ch <- prometheus.MustNewConstHistogram(descLatency, h.Count, h.Sum.Seconds(), buckets,
					t.Name, lun, scsi.OpClass(c).String())
			}
			for k, n := range s.SenseKeys {
				if n > 0 {
					counter(descErrors, n, t.Name, lun, senseKeyLabel(sense.Key(k)))
				}
			}
			counter(descConflicts, s.ReservationConflicts, t.Name, lun)
			counter(descOtherStatus, s.OtherStatus, t.Name, lun)
			gauge(descCapacity, float64(l.Size), t.Name, lun, l.Backstore)
			if l.Allocated >= 0 {
				gauge(descAllocated, float64(l.Allocated), t.Name, lun, l.Backstore)
			}
		}
	}
	gauge(descAllConns, float64(st.Fabric.ActiveConnections))
	counter(descRefused, st.Fabric.RefusedConns)
	counter(descBusyPolls, st.Fabric.BusyPollsFound, "data")
	counter(descBusyPolls, st.Fabric.BusyPollsExpired, "timeout")
	if is := st.ISNS; is != nil {
		counter(descISNSRegistrations, is.Registrations, "success")
		counter(descISNSRegistrations, is.RegistrationFailures, "failure")
		counter(descISNSRefreshes, is.Refreshes, "success")
		counter(descISNSRefreshes, is.RefreshFailures, "failure")
		registered := 0.0
		if is.Registered {
			registered = 1
		}
		gauge(descISNSRegistered, registered)
	}
}

// Handler serves /metrics from reg, /healthz (the process answers) and
// /readyz (ready reports the portals are up and the server is not
// stopping).
func Handler(reg *prometheus.Registry, ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil && !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	return mux
}

func tmfName(fn uint8) string {
	switch fn {
	case iscsi.TMFAbortTask:
		return "abort_task"
	case iscsi.TMFAbortTaskSet:
		return "abort_task_set"
	case iscsi.TMFClearACA:
		return "clear_aca"
	case iscsi.TMFClearTaskSet:
		return "clear_task_set"
	case iscsi.TMFLogicalUnitReset:
		return "logical_unit_reset"
	case iscsi.TMFTargetWarmReset:
		return "target_warm_reset"
	case iscsi.TMFTargetColdReset:
		return "target_cold_reset"
	case iscsi.TMFTaskReassign:
		return "task_reassign"
	case iscsi.TMFQueryTask:
		return "query_task"
	case iscsi.TMFQueryTaskSet:
		return "query_task_set"
	case iscsi.TMFITNexusReset:
		return "i_t_nexus_reset"
	case iscsi.TMFQueryAsyncEvent:
		return "query_async_event"
	}
	return "other"
}

func tmfResponseName(r uint8) string {
	switch r {
	case iscsi.TMFRespFunctionComplete:
		return "complete"
	case iscsi.TMFRespTaskNotExist:
		return "task_does_not_exist"
	case iscsi.TMFRespLUNNotExist:
		return "lun_does_not_exist"
	case iscsi.TMFRespTaskStillAllegiant:
		return "task_still_allegiant"
	case iscsi.TMFRespReassignNotSupported:
		return "reassign_not_supported"
	case iscsi.TMFRespNotSupported:
		return "not_supported"
	case iscsi.TMFRespAuthorizationFailed:
		return "authorization_failed"
	case iscsi.TMFRespFunctionSucceeded:
		return "succeeded"
	case iscsi.TMFRespFunctionRejected:
		return "rejected"
	}
	return "other"
}

// senseKeyLabel is a sense key as a label value: "medium_error".
func senseKeyLabel(k sense.Key) string {
	return strings.ReplaceAll(strings.ToLower(k.String()), " ", "_")
}
