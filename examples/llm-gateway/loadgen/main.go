// Command loadgen measures the latency the LLM gateway adds, with the
// method of ../shared/bench: loopback, separate processes pinned to CPUs,
// medians of several rounds measured in the same run.
//
//	go run ./examples/llm-gateway/loadgen -rate 2000 -duration 10s -rounds 3
//
// It starts two child processes (itself, re-executed): the offline mock
// provider (llm/mock) on 127.0.0.1, and a Portico gateway with the full
// llm chain in front of it — a model split by weight across two
// deployments, a per-key request and token limit too high to trigger, a
// cost budget, pricing, and GenAI metrics into an in-process OpenTelemetry
// MeterProvider (manual reader). With -layout isolate (the default on two
// or more CPUs) the gateway runs alone on CPU 0 and the load generator and
// the mock share CPU 1; -layout split puts the mock beside the gateway;
// -layout none pins nothing. It then drives, open loop, a fixed rate of
// non-streaming chat completions (a) straight at the mock and (b) through
// the gateway, each request in a goroutine of its own so that a slow
// answer never holds back the next send, and streamed chat completions
// the same way for time to first token. Latency runs from each request's
// send. It prints p50/p90/p99/max and the CPU time the mock and the
// gateway used per request, per round and as medians across rounds, with
// the added latency (b − a). -plain runs the gateway without the llm
// filter, to separate the proxy hop from the chain.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/llm"
	"github.com/porticoproxy/portico/llm/mock"
	"github.com/porticoproxy/portico/route"
)

// roleEnv makes a re-executed loadgen serve the mock or the gateway
// instead of measuring.
const roleEnv = "PORTICO_LOADGEN_ROLE"

func main() {
	if role := os.Getenv(roleEnv); role != "" {
		if err := serveRole(role, os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen", role+":", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, os.Args[1:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// Stats are one phase's latencies.
type Stats struct {
	N, Errors          int
	Rate               float64 // achieved send rate, req/s
	P50, P90, P99, Max time.Duration
	// MockCPU and GatewayCPU are the CPU time (user + system) the mock and
	// the gateway processes used per request sent during the phase.
	MockCPU, GatewayCPU time.Duration
	FirstErr            string
}

// Round is one round's measurements.
type Round struct {
	Direct, Gateway             Stats // non-streaming latency
	StreamDirect, StreamGateway Stats // time to first token
	// HAProxy and StreamHAProxy are the same through HAProxy in front of
	// the mock (-haproxy), pinned where the gateway is: what a C proxy's
	// hop adds on this machine.
	HAProxy, StreamHAProxy Stats
}

// Report is every round and the medians across them.
type Report struct {
	Rounds                     []Round
	Median                     Round
	AddedP50, AddedP99         time.Duration // gateway − direct, median of the rounds' differences
	AddedTTFTP50, AddedTTFTP99 time.Duration
	// The same for HAProxy, with -haproxy.
	HAProxyAddedP50, HAProxyAddedP99         time.Duration
	HAProxyAddedTTFTP50, HAProxyAddedTTFTP99 time.Duration
	Layout                                   string
	LoadBefore, LoadAfter                    string
}

func run(ctx context.Context, args []string, stdout io.Writer) (*Report, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	rate := fs.Float64("rate", 2000, "non-streaming requests per second (open loop)")
	duration := fs.Duration("duration", 10*time.Second, "measured time of each non-streaming phase")
	rounds := fs.Int("rounds", 3, "rounds; the report gives the medians")
	warmup := fs.Duration("warmup", time.Second, "unmeasured time at the same rate before each phase")
	streamRate := fs.Float64("stream-rate", 200, "streamed requests per second (0 skips streams)")
	streamDuration := fs.Duration("stream-duration", 5*time.Second, "measured time of each streaming phase")
	chunks := fs.Int("chunks", 16, "content chunks the mock streams per response")
	defLayout := "isolate"
	if runtime.NumCPU() < 2 {
		defLayout = "none"
	}
	layoutName := fs.String("layout", defLayout, "CPU pinning, as ../shared/bench: isolate (gateway alone on CPU 0; load generator and mock on CPU 1), split (load generator on CPU 1; mock and gateway on CPU 0) or none")
	cpuProfile := fs.String("gateway-cpuprofile", "", "write the gateway's CPU profile of the whole run to this file")
	plain := fs.Bool("plain", false, "run the gateway as a plain reverse proxy to the mock, without the llm filter (the cost of the proxy hop alone)")
	haproxy := fs.String("haproxy", "", "also measure through this HAProxy binary (e.g. haproxy) in front of the mock, pinned as the gateway is: one thread, keep-alive both sides, as ../shared/bench/peers/haproxy.cfg")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *rate <= 0 || *duration <= 0 || *rounds < 1 {
		return nil, errors.New("-rate, -duration and -rounds must be positive")
	}

	layout, ok := layouts[*layoutName]
	if !ok {
		return nil, fmt.Errorf("-layout %q: want isolate, split or none", *layoutName)
	}
	if layout.name != "none" && runtime.NumCPU() < 2 {
		return nil, fmt.Errorf("-layout %s needs 2 CPUs, this process has %d; use -layout none", layout.name, runtime.NumCPU())
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mock, err := startChild(ctx, layout.mock, "mock")
	if err != nil {
		return nil, err
	}
	gwArgs := []string{"-upstream", mock.addr}
	if *plain {
		gwArgs = append(gwArgs, "-plain")
	}
	if *cpuProfile != "" {
		gwArgs = append(gwArgs, "-cpuprofile", *cpuProfile)
	}
	gw, err := startChild(ctx, layout.gateway, "gateway", gwArgs...)
	if err != nil {
		return nil, err
	}
	defer func() {
		cancel()
		<-mock.done
		<-gw.done
	}()
	var hap child
	if *haproxy != "" {
		if hap, err = startHAProxy(ctx, *haproxy, layout.gateway, mock.addr); err != nil {
			return nil, err
		}
		defer func() { cancel(); <-hap.done }()
	}
	mockAddr, gwAddr := mock.addr, gw.addr
	procs := runtime.GOMAXPROCS(0)
	if err := pinSelf(layout.driver); err != nil {
		return nil, err
	}
	defer unpinSelf(procs)

	rep := &Report{Layout: layout.name, LoadBefore: loadavg()}
	fmt.Fprintf(stdout, "loadgen: layout %s; mock on %s, gateway on %s; %g req/s for %v (+%v warm-up), streams %g req/s for %v with %d chunks, %d rounds; load average %s\n",
		layout.name, mockAddr, gwAddr, *rate, *duration, *warmup, *streamRate, *streamDuration, *chunks, *rounds, rep.LoadBefore)

	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute,
		DisableCompression: true,
		DialContext:        (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()

	chat := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}],"max_tokens":64}`)
	words := make([]string, *chunks)
	for i := range words {
		words[i] = fmt.Sprintf("w%d", i)
	}
	stream := []byte(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"` + strings.Join(words, " ") + `"}],"max_tokens":64}`)
	direct := "http://" + mockAddr + "/v1/chat/completions"
	gateway := "http://" + gwAddr + "/v1/chat/completions"

	// phase measures url; proxy is the process whose CPU is the
	// "gateway CPU/req" column (none for direct).
	phase := func(url string, proxy int, body []byte, isStream bool, r float64, d time.Duration) Stats {
		if *warmup > 0 {
			load(ctx, client, url, body, isStream, r, *warmup)
		}
		m0, g0 := cpuTime(mock.pid), cpuTime(proxy)
		s := load(ctx, client, url, body, isStream, r, d)
		if s.N > 0 {
			s.MockCPU = (cpuTime(mock.pid) - m0) / time.Duration(s.N)
			s.GatewayCPU = (cpuTime(proxy) - g0) / time.Duration(s.N)
		}
		return s
	}
	viaHAProxy := "http://" + hap.addr + "/v1/chat/completions"
	for i := 0; i < *rounds && ctx.Err() == nil; i++ {
		var rd Round
		rd.Direct = phase(direct, 0, chat, false, *rate, *duration)
		rd.Gateway = phase(gateway, gw.pid, chat, false, *rate, *duration)
		if hap.pid != 0 {
			rd.HAProxy = phase(viaHAProxy, hap.pid, chat, false, *rate, *duration)
		}
		if *streamRate > 0 {
			rd.StreamDirect = phase(direct, 0, stream, true, *streamRate, *streamDuration)
			rd.StreamGateway = phase(gateway, gw.pid, stream, true, *streamRate, *streamDuration)
			if hap.pid != 0 {
				rd.StreamHAProxy = phase(viaHAProxy, hap.pid, stream, true, *streamRate, *streamDuration)
			}
		}
		rep.Rounds = append(rep.Rounds, rd)
		fmt.Fprintf(stdout, "round %d:\n", i+1)
		printRound(stdout, rd, *streamRate > 0)
	}
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	rep.LoadAfter = loadavg()
	rep.Median = medianRound(rep.Rounds)
	diff := func(f func(Round) time.Duration) time.Duration {
		var ds []time.Duration
		for _, r := range rep.Rounds {
			ds = append(ds, f(r))
		}
		return median(ds)
	}
	rep.AddedP50 = diff(func(r Round) time.Duration { return r.Gateway.P50 - r.Direct.P50 })
	rep.AddedP99 = diff(func(r Round) time.Duration { return r.Gateway.P99 - r.Direct.P99 })
	rep.AddedTTFTP50 = diff(func(r Round) time.Duration { return r.StreamGateway.P50 - r.StreamDirect.P50 })
	rep.AddedTTFTP99 = diff(func(r Round) time.Duration { return r.StreamGateway.P99 - r.StreamDirect.P99 })
	rep.HAProxyAddedP50 = diff(func(r Round) time.Duration { return r.HAProxy.P50 - r.Direct.P50 })
	rep.HAProxyAddedP99 = diff(func(r Round) time.Duration { return r.HAProxy.P99 - r.Direct.P99 })
	rep.HAProxyAddedTTFTP50 = diff(func(r Round) time.Duration { return r.StreamHAProxy.P50 - r.StreamDirect.P50 })
	rep.HAProxyAddedTTFTP99 = diff(func(r Round) time.Duration { return r.StreamHAProxy.P99 - r.StreamDirect.P99 })

	fmt.Fprintf(stdout, "\nmedians of %d rounds (load average before %s, after %s):\n\n", len(rep.Rounds), rep.LoadBefore, rep.LoadAfter)
	fmt.Fprintln(stdout, "| phase | req/s | n | errors | p50 | p90 | p99 | max | mock CPU/req | proxy CPU/req |")
	fmt.Fprintln(stdout, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	printRound(stdout, rep.Median, *streamRate > 0)
	fmt.Fprintf(stdout, "\nadded by the gateway (median of per-round differences): p50 %s, p99 %s\n", us(rep.AddedP50), us(rep.AddedP99))
	if *streamRate > 0 {
		fmt.Fprintf(stdout, "added time to first token: p50 %s, p99 %s\n", us(rep.AddedTTFTP50), us(rep.AddedTTFTP99))
	}
	if hap.pid != 0 {
		fmt.Fprintf(stdout, "added by HAProxy (same method, same run): p50 %s, p99 %s", us(rep.HAProxyAddedP50), us(rep.HAProxyAddedP99))
		if *streamRate > 0 {
			fmt.Fprintf(stdout, "; time to first token p50 %s, p99 %s", us(rep.HAProxyAddedTTFTP50), us(rep.HAProxyAddedTTFTP99))
		}
		fmt.Fprintln(stdout)
	}
	return rep, nil
}

func printRound(w io.Writer, r Round, streams bool) {
	haproxy := r.HAProxy.N > 0
	row := func(name string, s Stats) {
		fmt.Fprintf(w, "| %s | %.0f | %d | %d | %s | %s | %s | %s | %s | %s |\n", name, s.Rate, s.N, s.Errors, us(s.P50), us(s.P90), us(s.P99), us(s.Max), us(s.MockCPU), us(s.GatewayCPU))
		if s.FirstErr != "" {
			fmt.Fprintf(w, "|   first error: %s |\n", s.FirstErr)
		}
	}
	row("chat, direct to mock", r.Direct)
	row("chat, through gateway", r.Gateway)
	if haproxy {
		row("chat, through HAProxy", r.HAProxy)
	}
	if streams {
		row("stream TTFT, direct", r.StreamDirect)
		row("stream TTFT, through gateway", r.StreamGateway)
		if haproxy {
			row("stream TTFT, through HAProxy", r.StreamHAProxy)
		}
	}
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

// load sends body to url at rate per second for d, open loop: request i is
// due at start + i/rate whatever happened to the others, each in a
// goroutine of its own, so a slow answer never delays a later send (no
// coordinated omission). Its latency runs from its send to the end of the
// response (to the first token for streams).
func load(ctx context.Context, client *http.Client, url string, body []byte, isStream bool, rate float64, d time.Duration) Stats {
	n := int(rate * d.Seconds())
	if n < 1 {
		n = 1
	}
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	interval := time.Duration(float64(time.Second) / rate)
	var wg sync.WaitGroup
	start := time.Now()
	sent := 0
	for i := 0; i < n && ctx.Err() == nil; i++ {
		// Go's timers fire on this kernel with about 1 ms granularity (the
		// netpoller waits in whole milliseconds), so at 2 000 req/s a
		// wake-up finds one or more requests due: each is sent at once.
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat[i], errs[i] = do(ctx, client, url, body, isStream)
		}()
	}
	lastSend := time.Since(start)
	wg.Wait()
	s := Stats{N: sent}
	if lastSend > 0 && sent > 1 {
		s.Rate = float64(sent-1) / lastSend.Seconds()
	}
	ok := lat[:0:0]
	for i := 0; i < sent; i++ {
		if errs[i] != nil {
			if s.Errors == 0 {
				s.FirstErr = errs[i].Error()
			}
			s.Errors++
			continue
		}
		ok = append(ok, lat[i])
	}
	slices.Sort(ok)
	if len(ok) > 0 {
		s.P50, s.P90, s.P99, s.Max = pct(ok, 0.50), pct(ok, 0.90), pct(ok, 0.99), ok[len(ok)-1]
	}
	return s
}

// pct is the nearest-rank percentile of sorted latencies.
func pct(sorted []time.Duration, p float64) time.Duration {
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

var (
	contentEmpty = []byte(`"content":""`)
	contentKey   = []byte(`"content":"`)
)

// do sends one request and returns its latency from the send: to the end
// of the body, or for a stream to the first data event carrying text.
func do(ctx context.Context, client *http.Client, url string, body []byte, isStream bool) (time.Duration, error) {
	sent := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-loadgen-client")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return 0, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	if !isStream {
		b, err := io.ReadAll(resp.Body)
		lat := time.Since(sent)
		if err != nil {
			return 0, err
		}
		if !bytes.Contains(b, []byte(`"chat.completion"`)) {
			return 0, fmt.Errorf("not a chat completion: %.200s", b)
		}
		return lat, nil
	}
	var ttft time.Duration
	done := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("data:")) {
			continue
		}
		if bytes.Contains(line, []byte("[DONE]")) {
			done = true
			continue
		}
		if ttft == 0 && bytes.Contains(line, contentKey) && !bytes.Contains(line, contentEmpty) {
			ttft = time.Since(sent)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if ttft == 0 || !done {
		return 0, fmt.Errorf("stream without text or [DONE] (text %v, done %v)", ttft != 0, done)
	}
	return ttft, nil
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianStats(ss []Stats) Stats {
	pick := func(f func(Stats) time.Duration) time.Duration {
		var ds []time.Duration
		for _, s := range ss {
			ds = append(ds, f(s))
		}
		return median(ds)
	}
	var m Stats
	var rates []float64
	for _, s := range ss {
		m.N += s.N
		m.Errors += s.Errors
		rates = append(rates, s.Rate)
		if m.FirstErr == "" {
			m.FirstErr = s.FirstErr
		}
	}
	slices.Sort(rates)
	if len(rates) > 0 {
		m.Rate = rates[len(rates)/2]
	}
	m.P50 = pick(func(s Stats) time.Duration { return s.P50 })
	m.P90 = pick(func(s Stats) time.Duration { return s.P90 })
	m.P99 = pick(func(s Stats) time.Duration { return s.P99 })
	m.Max = pick(func(s Stats) time.Duration { return s.Max })
	m.MockCPU = pick(func(s Stats) time.Duration { return s.MockCPU })
	m.GatewayCPU = pick(func(s Stats) time.Duration { return s.GatewayCPU })
	return m
}

// medianRound is the median of each statistic across rounds (N and
// Errors are totals).
func medianRound(rs []Round) Round {
	col := func(f func(Round) Stats) []Stats {
		var ss []Stats
		for _, r := range rs {
			ss = append(ss, f(r))
		}
		return ss
	}
	return Round{
		Direct:        medianStats(col(func(r Round) Stats { return r.Direct })),
		HAProxy:       medianStats(col(func(r Round) Stats { return r.HAProxy })),
		StreamHAProxy: medianStats(col(func(r Round) Stats { return r.StreamHAProxy })),
		Gateway:       medianStats(col(func(r Round) Stats { return r.Gateway })),
		StreamDirect:  medianStats(col(func(r Round) Stats { return r.StreamDirect })),
		StreamGateway: medianStats(col(func(r Round) Stats { return r.StreamGateway })),
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// child is a started role process.
type child struct {
	addr string
	pid  int
	done <-chan struct{} // closed when the process has exited
}

// startChild re-executes this program in role, pinned to cpu (none when
// cpu < 0), and returns the address it listens on. The child exits when
// ctx is done or its stdin closes.
func startChild(ctx context.Context, cpu int, role string, args ...string) (child, error) {
	exe, err := os.Executable()
	if err != nil {
		return child{}, err
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return child{}, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return child{}, err
	}
	// Cancelling ctx closes the child's stdin, which it takes as the
	// signal to shut down cleanly (its CPU profile is written then); it is
	// killed if it has not exited 5 s later.
	cmd.Cancel = stdin.Close
	done, err := startProcess(cmd, cpu, nil)
	if err != nil {
		return child{}, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return child{}, fmt.Errorf("%s: no address: %w", role, err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ADDR ")
	if !ok {
		return child{}, fmt.Errorf("%s: unexpected %q", role, line)
	}
	return child{addr: addr, pid: cmd.Process.Pid, done: done}, nil
}

// startProcess starts cmd pinned to cpu (none when cpu < 0) and returns a
// channel closed once it has exited and then, if set, after has run. A
// process that outlives its context by 5 s is killed.
func startProcess(cmd *exec.Cmd, cpu int, after func()) (<-chan struct{}, error) {
	cmd.WaitDelay = 5 * time.Second
	if err := startPinned(cmd, cpu); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		if after != nil {
			after()
		}
		close(done)
	}()
	return done, nil
}

// haproxyConfig is ../shared/bench/peers/haproxy.cfg's setup: one thread,
// no logging, keep-alive on both sides, upstream connections shared
// between clients, and http-no-delay so that stream events are not held
// back.
const haproxyConfig = `global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    option http-no-delay
frontend fe
    bind %s
    default_backend be
backend be
    http-reuse always
    server up %s
`

// startHAProxy runs the HAProxy binary exe in the foreground, pinned to
// cpu, in front of upstream, and returns its address once it accepts
// connections. It stops when ctx is done.
func startHAProxy(ctx context.Context, exe string, cpu int, upstream string) (child, error) {
	path, err := exec.LookPath(exe)
	if err != nil {
		return child{}, fmt.Errorf("-haproxy: %w (apt-get install haproxy)", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return child{}, err
	}
	addr := ln.Addr().String()
	ln.Close()
	dir, err := os.MkdirTemp("", "loadgen-haproxy")
	if err != nil {
		return child{}, err
	}
	cfg := dir + "/haproxy.cfg"
	if err := os.WriteFile(cfg, fmt.Appendf(nil, haproxyConfig, addr, upstream), 0o600); err != nil {
		return child{}, err
	}
	cmd := exec.CommandContext(ctx, path, "-db", "-f", cfg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	done, err := startProcess(cmd, cpu, func() { os.RemoveAll(dir) })
	if err != nil {
		return child{}, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return child{addr: addr, pid: cmd.Process.Pid, done: done}, nil
		}
		select {
		case <-done:
			return child{}, fmt.Errorf("haproxy exited before listening on %s", addr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return child{}, fmt.Errorf("haproxy not listening on %s after 10 s: %v", addr, err)
		}
	}
}

// cpuTime is the user + system CPU time process pid has used, from
// /proc/pid/stat (zero where that cannot be read).
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/pid/stat's CPU times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// serveRole serves the mock or the gateway on a loopback port, prints
// "ADDR host:port", and returns when stdin closes.
func serveRole(role string, args []string) error {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	switch role {
	case "mock":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: &mock.Server{}, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		fmt.Printf("ADDR %s\n", ln.Addr())
		<-ctx.Done()
		return srv.Close()
	case "gateway":
		fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
		upstream := fs.String("upstream", "", "address of the mock provider")
		profile := fs.String("cpuprofile", "", "write a CPU profile here until exit")
		plain := fs.Bool("plain", false, "no llm filter: a plain reverse proxy to the upstream")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if *profile != "" {
			f, err := os.Create(*profile)
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
		newGW := newGateway
		if *plain {
			newGW = newPlainGateway
		}
		gw, shutdown, err := newGW(*upstream)
		if err != nil {
			return err
		}
		defer shutdown()
		errc := make(chan error, 1)
		go func() { errc <- gw.Serve(ctx) }()
		fmt.Printf("ADDR %s\n", gw.ListenerAddr("llm"))
		return <-errc
	}
	return fmt.Errorf("unknown role %q", role)
}

// newGateway is Portico with the full llm chain in front of the mock at
// upstream: the configuration of llm's BenchmarkChatFullChain.
func newGateway(upstream string) (*portico.Gateway, func(), error) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	base := "http://" + upstream + "/v1"
	gl, err := llm.New(llm.Config{
		Providers: []llm.Provider{
			{Name: "a", Kind: llm.OpenAI, BaseURL: base, APIKey: "sk-upstream-a"},
			{Name: "b", Kind: llm.OpenAI, BaseURL: base, APIKey: "sk-upstream-b"},
		},
		Models: []llm.Model{{Name: "gpt-*", Deployments: []llm.Deployment{{Provider: "a", Weight: 3}, {Provider: "b", Weight: 1}}}},
		Limits: []llm.Limit{{Name: "per-key", Scope: llm.Scope{Key: "api_key"}, Window: time.Minute,
			Requests: 1 << 40, Tokens: 1 << 50}},
		Budgets:   []llm.Budget{{Name: "daily", Scope: llm.Scope{Key: "api_key"}, Window: 24 * time.Hour, Cost: 1e9}},
		Pricing:   &llm.Pricing{Models: map[string]llm.Price{"gpt-*": {Input: 2.5, Output: 10}}},
		Telemetry: llm.Telemetry{MeterProvider: mp},
	})
	if err != nil {
		mp.Shutdown(context.Background())
		return nil, nil, err
	}
	shutdown := func() {
		gl.Close()
		mp.Shutdown(context.Background())
	}
	gw, err := portico.New(portico.Config{
		Listeners: []listener.Config{{Name: "llm", Address: "127.0.0.1:0", FilterChains: []listener.FilterChain{{
			Name: "llm",
			HTTP: &listener.HTTPConfig{StatPrefix: "llm", RouteConfig: "llm", Filters: []filter.Filter{gl}},
		}}}},
		Routes: []route.Config{{Name: "llm", VirtualHosts: []route.VirtualHost{{
			Name: "llm", Domains: []string{"*"}, Rules: gl.Rules(),
		}}}},
		Clusters: gl.Clusters(),
	}, portico.Options{Admin: "-"})
	if err != nil {
		shutdown()
		return nil, nil, err
	}
	gl.Bind(gw)
	return gw, shutdown, nil
}

// newPlainGateway is Portico as a plain reverse proxy in front of the mock
// at upstream: the same listener and cluster settings as newGateway, no
// llm filter.
func newPlainGateway(upstream string) (*portico.Gateway, func(), error) {
	gw, err := portico.New(portico.Config{
		Listeners: []listener.Config{{Name: "llm", Address: "127.0.0.1:0", FilterChains: []listener.FilterChain{{
			Name: "llm",
			HTTP: &listener.HTTPConfig{StatPrefix: "llm", RouteConfig: "llm"},
		}}}},
		Routes: []route.Config{{Name: "llm", VirtualHosts: []route.VirtualHost{{
			Name: "llm", Domains: []string{"*"}, Rules: []route.Rule{{Match: route.Match{Prefix: "/"}, Cluster: "mock"}},
		}}}},
		Clusters: []cluster.Config{{Name: "mock", Endpoints: []cluster.Endpoint{{Address: upstream}}}},
	}, portico.Options{Admin: "-"})
	if err != nil {
		return nil, nil, err
	}
	return gw, func() {}, nil
}
