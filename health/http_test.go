package health

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// startHTTP serves h on a loopback listener; h2c also serves HTTP/2 with
// prior knowledge.
func startHTTP(t *testing.T, h http.HandlerFunc, h2c bool) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	if h2c {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		srv.Config.Protocols = &p
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestHTTPCheck(t *testing.T) {
	type seen struct{ method, host, path, proto, ua string }
	tests := []struct {
		name    string
		checker *HTTP // nil means &HTTP{}
		status  int
		wantErr string // substring; empty means healthy
		want    seen   // fields left empty are not compared
	}{
		{name: "200 ok", status: 200, want: seen{method: "GET", path: "/", proto: "HTTP/1.1", ua: userAgent}},
		{name: "503 fails", status: 503, wantErr: "unexpected status 503"},
		{name: "204 not in default", status: 204, wantErr: "unexpected status 204"},
		{name: "range includes 204", checker: &HTTP{ExpectedStatuses: []Range{{200, 300}}}, status: 204},
		{name: "range end exclusive", checker: &HTTP{ExpectedStatuses: []Range{{200, 204}}}, status: 204, wantErr: "unexpected status 204"},
		{name: "second range", checker: &HTTP{ExpectedStatuses: []Range{{200, 201}, {429, 430}}}, status: 429},
		{name: "host and path", checker: &HTTP{Host: "api.internal", Path: "/healthz?full=1"}, status: 200,
			want: seen{host: "api.internal", path: "/healthz?full=1"}},
		{name: "method", checker: &HTTP{Method: "HEAD"}, status: 200, want: seen{method: "HEAD"}},
		{name: "h2c", checker: &HTTP{UseHTTP2: true}, status: 200, want: seen{proto: "HTTP/2.0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.checker
			if h == nil {
				h = &HTTP{}
			}
			got := make(chan seen, 1)
			addr := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
				got <- seen{r.Method, r.Host, r.URL.RequestURI(), r.Proto, r.UserAgent()}
				w.WriteHeader(tt.status)
				w.Write([]byte("body"))
			}, h.UseHTTP2)
			defer h.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			err := h.Check(ctx, addr)
			checkErr(t, err, tt.wantErr)
			s := <-got
			if tt.want.host == "" {
				tt.want.host = addr
			}
			for _, f := range []struct{ name, got, want string }{
				{"method", s.method, tt.want.method},
				{"host", s.host, tt.want.host},
				{"path", s.path, tt.want.path},
				{"proto", s.proto, tt.want.proto},
				{"user agent", s.ua, tt.want.ua},
			} {
				if f.want != "" && f.got != f.want {
					t.Errorf("server saw %s %q, want %q", f.name, f.got, f.want)
				}
			}
		})
	}
}

func TestHTTPReusesConnection(t *testing.T) {
	conns := make(chan string, 10)
	addr := startHTTP(t, func(w http.ResponseWriter, r *http.Request) { conns <- r.RemoteAddr }, false)
	h := &HTTP{}
	defer h.CloseIdleConnections()
	for range 3 {
		if err := h.Check(t.Context(), addr); err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
	first := <-conns
	for range 2 {
		if got := <-conns; got != first {
			t.Errorf("check came from %s, want reused connection %s", got, first)
		}
	}
}

func TestHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	addr := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, false)
	defer close(release)
	h := &HTTP{}
	defer h.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := h.Check(ctx, addr)
	checkErr(t, err, "deadline exceeded")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Check took %v, want about the 100ms timeout", d)
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("Check = %v, want nil", err)
	case want != "" && err == nil:
		t.Errorf("Check = nil, want error containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("Check = %v, want error containing %q", err, want)
	}
}

// TestHTTPCheckDegraded: a passing response with x-envoy-degraded, any
// value, reports the endpoint degraded; a failing one is a failure.
func TestHTTPCheckDegraded(t *testing.T) {
	tests := []struct {
		name         string
		status       int
		header       []string // values of x-envoy-degraded; nil: absent
		h2           bool
		wantDegraded bool
		wantErr      string
	}{
		{name: "no header", status: 200},
		{name: "header", status: 200, header: []string{"true"}, wantDegraded: true},
		{name: "empty value", status: 200, header: []string{""}, wantDegraded: true},
		{name: "h2c", status: 200, header: []string{"1"}, h2: true, wantDegraded: true},
		{name: "failing status", status: 503, header: []string{"true"}, wantErr: "unexpected status 503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &HTTP{UseHTTP2: tt.h2}
			addr := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.header != nil {
					w.Header()["x-envoy-degraded"] = tt.header // as sent by a non-Go server
				}
				w.WriteHeader(tt.status)
			}, tt.h2)
			defer h.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			degraded, err := h.CheckDegraded(ctx, addr)
			checkErr(t, err, tt.wantErr)
			if degraded != tt.wantDegraded {
				t.Errorf("CheckDegraded() degraded = %t, want %t", degraded, tt.wantDegraded)
			}
			if err := h.Check(ctx, addr); (err != nil) != (tt.wantErr != "") {
				t.Errorf("Check() = %v, want error %t", err, tt.wantErr != "")
			}
		})
	}
}
