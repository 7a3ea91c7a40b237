package portico

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/porticoproxy/portico/listener"
)

// DefaultDrainTime is Envoy's --drain-time-s default: how long a graceful
// /drain_listeners keeps serving while failing readiness.
const DefaultDrainTime = 600 * time.Second

const modulePath = "github.com/porticoproxy/portico"

// build describes the running build of Portico.
type build struct {
	version  string // module version, "(devel)" when built from a checkout
	revision string // VCS revision, when the main module is Portico
	modified bool
	number   int64 // server.version
}

// buildVersion reads the build information once.
var buildVersion = sync.OnceValue(func() build {
	b := build{version: "(devel)"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if bi.Main.Path == modulePath {
		if bi.Main.Version != "" {
			b.version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.revision = s.Value
			case "vcs.modified":
				b.modified = s.Value == "true"
			}
		}
	} else {
		for _, d := range bi.Deps {
			if d.Path == modulePath {
				b.version = d.Version
			}
		}
	}
	b.number = versionNumber(b.revision)
	return b
})

// String renders the build as Envoy renders its version:
// revision/version/Clean|Modified/RELEASE/TLS library.
func (b build) String() string {
	rev := b.revision
	if rev == "" {
		rev = "unknown"
	}
	status := "Clean"
	if b.modified {
		status = "Modified"
	}
	return rev + "/" + b.version + "/" + status + "/RELEASE/" + runtime.Version() + "-crypto-tls"
}

func (g *Gateway) state() string {
	if g.draining.Load() {
		return "DRAINING"
	}
	return "LIVE"
}

// adminServerInfo serves /server_info, shaped as Envoy's ServerInfo.
func (g *Gateway) adminServerInfo(w http.ResponseWriter, r *http.Request) {
	uptime := strconv.FormatInt(int64(time.Since(g.metrics.start)/time.Second), 10) + "s"
	b := buildVersion()
	node := map[string]any{
		"user_agent_name":          "portico",
		"user_agent_build_version": map[string]any{"metadata": map[string]string{"version": b.version, "revision": b.revision}},
	}
	if g.opts.NodeID != "" {
		node["id"] = g.opts.NodeID
	}
	if g.opts.NodeCluster != "" {
		node["cluster"] = g.opts.NodeCluster
	}
	writeJSON(w, map[string]any{
		"version":             b.String(),
		"state":               g.state(),
		"hot_restart_version": "disabled",
		"command_line_options": map[string]any{
			"concurrency":         runtime.GOMAXPROCS(0),
			"log_level":           levelName(g.level.Level()),
			"drain_time":          strconv.FormatInt(int64(g.drainTime()/time.Second), 10) + "s",
			"drain_strategy":      "Immediate",
			"mode":                "Serve",
			"service_cluster":     g.opts.NodeCluster,
			"service_node":        g.opts.NodeID,
			"disable_hot_restart": true,
			"restart_epoch":       0,
		},
		"node":                 node,
		"uptime_current_epoch": uptime,
		"uptime_all_epochs":    uptime,
	})
}

// adminMemory serves /memory: the Go runtime's memory in the fields of
// Envoy's Memory message (tcmalloc's terms), as decimal strings.
func (g *Gateway) adminMemory(w http.ResponseWriter, r *http.Request) {
	m := readMemory()
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	writeJSON(w, map[string]string{
		"allocated":            u(m.allocated),
		"heap_size":            u(m.heapSize),
		"pageheap_unmapped":    u(m.unmapped),
		"pageheap_free":        u(m.free),
		"total_thread_cache":   u(m.threadCache),
		"total_physical_bytes": u(m.physical),
	})
}

func (g *Gateway) drainTime() time.Duration {
	if g.opts.DrainTime > 0 {
		return g.opts.DrainTime
	}
	return DefaultDrainTime
}

// adminDrainListeners serves POST /drain_listeners: every listener stops
// accepting and drains its connections (HTTP/1.1 responses get
// Connection: close, HTTP/2 connections GOAWAY), closing what is left after
// the drain timeout. With ?graceful the server first enters the draining
// state (/ready answers 503, server.state is 1) and keeps serving for
// Options.DrainTime so that load balancers take it out of rotation, as
// Envoy's graceful drain does. ?inboundonly is accepted and changes
// nothing: every Portico listener is inbound. The drain runs in the
// background; the listeners do not come back (a later configuration update
// of a drained listener fails).
func (g *Gateway) adminDrainListeners(w http.ResponseWriter, r *http.Request) {
	_, graceful := r.URL.Query()["graceful"]
	g.mu.Lock()
	if g.serveCtx.Err() != nil {
		g.mu.Unlock()
		http.Error(w, "gateway closed", http.StatusServiceUnavailable)
		return
	}
	if graceful {
		g.draining.Store(true)
	}
	g.wg.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.wg.Done()
		g.drainListeners(graceful)
	}()
	fmt.Fprintln(w, "OK")
}

func (g *Gateway) drainListeners(graceful bool) {
	if graceful {
		t := time.NewTimer(g.drainTime())
		select {
		case <-t.C:
		case <-g.serveCtx.Done():
			t.Stop()
			return
		}
	}
	g.mu.Lock()
	lls := make([]*liveListener, 0, len(g.listeners))
	for _, ll := range g.listeners {
		lls = append(lls, ll)
	}
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(g.serveCtx, listener.DefaultDrainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, ll := range lls {
		wg.Go(func() {
			if err := ll.l.Shutdown(ctx); err != nil {
				g.log.Warn("drain listeners", "listener", ll.cfg.Name, "err", err)
			}
		})
	}
	wg.Wait()
	g.log.Info("listeners drained", "graceful", graceful)
}

// Envoy's log levels that slog has no name for.
const (
	levelTrace    = slog.LevelDebug - 4
	levelCritical = slog.LevelError + 4
	levelOff      = slog.Level(1 << 20)
)

func parseLevel(s string) (slog.Level, bool) {
	switch s {
	case "trace":
		return levelTrace, true
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	case "critical":
		return levelCritical, true
	case "off":
		return levelOff, true
	}
	return 0, false
}

func levelName(l slog.Level) string {
	switch {
	case l <= levelTrace:
		return "trace"
	case l <= slog.LevelDebug:
		return "debug"
	case l <= slog.LevelInfo:
		return "info"
	case l <= slog.LevelWarn:
		return "warning"
	case l <= slog.LevelError:
		return "error"
	case l <= levelCritical:
		return "critical"
	}
	return "off"
}

// adminLogging serves POST /logging?level=<level>: it sets the level of
// the gateway's logger (Options.LogLevel). Envoy's level names are
// accepted; "warn" too.
func (g *Gateway) adminLogging(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if s := q.Get("level"); s != "" {
		l, ok := parseLevel(s)
		if !ok {
			http.Error(w, fmt.Sprintf("unknown level %q\nusage: /logging?level=<trace|debug|info|warning|error|critical|off>", s), http.StatusBadRequest)
			return
		}
		old := g.level.Level()
		g.level.Set(l)
		g.log.Info("log level changed", "from", levelName(old), "to", levelName(l))
	} else if len(q) > 0 {
		http.Error(w, "usage: /logging?level=<trace|debug|info|warning|error|critical|off>", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "active loggers:\n  portico: %s\n", levelName(g.level.Level()))
}

// newLogger returns the gateway's logger: l (discarding when nil) behind
// the minimum level lv.
func newLogger(l *slog.Logger, lv *slog.LevelVar) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(&levelHandler{next: l.Handler(), level: lv})
}

// levelHandler drops records below a level that can change at run time,
// then defers to next.
type levelHandler struct {
	next  slog.Handler
	level *slog.LevelVar
}

var _ slog.Handler = (*levelHandler)(nil)

func (h *levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level.Level() && h.next.Enabled(ctx, l)
}

func (h *levelHandler) Handle(ctx context.Context, r slog.Record) error { return h.next.Handle(ctx, r) }

func (h *levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &levelHandler{next: h.next.WithAttrs(as), level: h.level}
}

func (h *levelHandler) WithGroup(name string) slog.Handler {
	return &levelHandler{next: h.next.WithGroup(name), level: h.level}
}
