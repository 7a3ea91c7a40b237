// Command envoy runs an Envoy v3 bootstrap file with Portico: static
// resources, dynamic resources from a management server (ADS or one
// stream per type, state-of-the-world or delta) or from files, the admin
// endpoint and Envoy's stat names.
//
//	go run ./examples/envoy -c examples/envoy/configs/front-proxy.yaml
//	go run ./examples/envoy -c examples/envoy/configs/tls-ingress.yaml
//	go run ./examples/envoy -c examples/envoy/configs/ads.yaml
//
// Anything in the file that Portico does not implement stops it with the
// field's path; -lenient runs it without those fields instead, printing
// each one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/xds"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "envoy:", err)
		os.Exit(1)
	}
}

// started is what run hands to tests once the gateway serves.
type started struct {
	gw *portico.Gateway
	b  *xds.Bootstrap
}

// run loads the bootstrap named by -c, serves it until ctx is done and
// returns. When ready is not nil it receives the gateway once it is built
// (tests use it).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- started) error {
	fs := flag.NewFlagSet("envoy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("c", "", "Envoy v3 bootstrap file, YAML or JSON (Envoy's -c)")
	lenient := fs.Bool("lenient", false, "run without the fields Portico does not implement instead of refusing the file")
	statsPrefix := fs.String("stats-prefix", xds.DefaultBootstrapStatsPrefix, "prefix of metric names")
	admin := fs.String("admin", "", "admin address, overriding admin.address (- disables it)")
	listen := fs.String("listen", "", "bind every listener of the file to this address instead (e.g. 127.0.0.1:0)")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *config == "" {
		fs.Usage()
		return errors.New("-c is required")
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	levelVar := new(slog.LevelVar)
	levelVar.Set(lv)
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: levelVar}))

	opts := xds.BootstrapOptions{
		Translate:    xds.TranslateOptions{Lenient: *lenient},
		StatsPrefix:  *statsPrefix,
		AdminAddress: *admin,
		Stdout:       stdout,
		Logger:       logger,
	}
	if *listen != "" {
		opts.ListenerAddress = func(string, string) string { return *listen }
	}
	b, err := xds.LoadBootstrap(*config, opts)
	if err != nil {
		return err
	}
	b.Options.LogLevel = levelVar
	gw, err := b.NewGateway()
	if err != nil {
		return err
	}
	for _, l := range b.Config.Listeners {
		logger.Info("listener", "name", l.Name, "address", gw.ListenerAddr(l.Name).String())
	}
	if a := gw.AdminAddr(); a != nil {
		logger.Info("admin", "address", "http://"+a.String())
	}
	if b.Client != nil {
		logger.Info("xds", "server", b.Client.Target, "node", b.Client.Node.GetId())
	}
	if ready != nil {
		ready <- started{gw: gw, b: b}
	}
	return b.Run(ctx, gw)
}
