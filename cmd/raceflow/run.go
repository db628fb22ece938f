package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/raceflow/raceflow/flows"
)

func runRun(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	drain := fs.Duration("drain-timeout", 30*time.Second, "on shutdown, how long to wait for in-flight polls")
	fs.Usage = func() {
		fmt.Fprintln(a.stderr, "Usage: raceflow run [flags]\n\nContinuous processing: daily baseline, adaptive polling of every active race, metrics and health on RACEFLOW_HTTP_ADDR.")
		fs.PrintDefaults()
	}
	cfg, err := parseConfig(a, fs, args)
	if err != nil {
		return err
	}
	log := newLogger(cfg, a.stderr)
	log.WithField("config", cfg.String()).Info("raceflow run starting")
	pool, err := openSchema(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	reg, metrics, err := newMetrics()
	if err != nil {
		return err
	}
	client, err := newAPIClient(cfg, metrics)
	if err != nil {
		return err
	}
	scfg := flows.DefaultServiceConfig()
	scfg.Flow = flowConfig(cfg)
	scfg.Partitions.Retention = cfg.HistoryRetention
	scfg.DrainTimeout = *drain
	svc, err := flows.NewService(scfg, flows.ServiceDeps{Pool: pool, API: client, Logger: log, Registry: reg, Metrics: metrics})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("RACEFLOW_HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	srv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.WithError(err).Error("http server")
		}
	}()
	log.WithField("addr", ln.Addr().String()).Info("serving /healthz, /readyz and /metrics")

	runErr := svc.Run(ctx)
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	if runErr != nil {
		return runErr
	}
	log.Info("raceflow run stopped")
	return nil
}
