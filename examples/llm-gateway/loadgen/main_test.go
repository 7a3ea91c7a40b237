package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve the mock and gateway roles when
// run re-executes it.
func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		if err := serveRole(role, os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen", role+":", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestShortRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	rep, err := run(ctx, []string{"-rate", "200", "-duration", "1s", "-warmup", "200ms", "-rounds", "1",
		"-stream-rate", "50", "-stream-duration", "1s", "-chunks", "4"}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rounds) != 1 {
		t.Fatalf("%d rounds", len(rep.Rounds))
	}
	m := rep.Median
	for name, s := range map[string]Stats{"direct": m.Direct, "gateway": m.Gateway, "stream direct": m.StreamDirect, "stream gateway": m.StreamGateway} {
		want := 200
		if strings.HasPrefix(name, "stream") {
			want = 50
		}
		if s.Errors != 0 {
			t.Errorf("%s: %d errors, first: %s", name, s.Errors, s.FirstErr)
		}
		if s.N != want {
			t.Errorf("%s: sent %d requests, want %d", name, s.N, want)
		}
		if s.Rate < float64(want)*0.8 || s.Rate > float64(want)*1.2 {
			t.Errorf("%s: achieved %.0f req/s, want about %d", name, s.Rate, want)
		}
		if !(0 < s.P50 && s.P50 <= s.P90 && s.P90 <= s.P99 && s.P99 <= s.Max && s.Max < 10*time.Second) {
			t.Errorf("%s: insane percentiles p50 %v p90 %v p99 %v max %v", name, s.P50, s.P90, s.P99, s.Max)
		}
	}
	if !strings.Contains(out.String(), "added by the gateway") {
		t.Errorf("no summary in the output")
	}
}

// TestHAProxyReference runs the same short measurement with HAProxy in
// front of the mock as the reference proxy.
func TestHAProxyReference(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatal("this test needs haproxy on PATH (apt-get install haproxy; .ci/run installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	rep, err := run(ctx, []string{"-rate", "200", "-duration", "1s", "-warmup", "200ms", "-rounds", "1",
		"-stream-rate", "50", "-stream-duration", "1s", "-chunks", "4", "-haproxy", "haproxy"}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	m := rep.Median
	for name, s := range map[string]Stats{"haproxy": m.HAProxy, "stream haproxy": m.StreamHAProxy} {
		want := 200
		if strings.HasPrefix(name, "stream") {
			want = 50
		}
		if s.Errors != 0 || s.N != want {
			t.Errorf("%s: %d requests, %d errors (first: %s); want %d, none", name, s.N, s.Errors, s.FirstErr, want)
		}
		if !(0 < s.P50 && s.P50 <= s.P99) {
			t.Errorf("%s: p50 %v p99 %v", name, s.P50, s.P99)
		}
	}
	if !strings.Contains(out.String(), "added by HAProxy") {
		t.Errorf("no HAProxy summary in the output")
	}
}
