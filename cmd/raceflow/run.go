package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
)

func (a *app) runCommand() *cobra.Command {
	var drain time.Duration
	cmd := &cobra.Command{
		Use:   "run",
		Short: "continuous processing: baseline, scheduler, flow, metrics and health",
		Long: `Continuous processing: the daily baseline of meetings and races, adaptive polling
of every active race through the flow, and /healthz, /readyz and /metrics on
--http-addr. SIGINT or SIGTERM drains in-flight polls and exits 0.`,
		Args: noArgs,
	}
	cmd.Flags().DurationVar(&drain, "drain-timeout", 30*time.Second, "on shutdown, how long to wait for in-flight polls")
	set := a.bindConfig(cmd, config.FlagDatabase|config.FlagAPI|config.FlagBackend|config.FlagNamespace|config.FlagShards|config.FlagHTTP|config.FlagLog|config.FlagAlerts)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := set.resolve(cmd)
		if err != nil {
			return err
		}
		if drain <= 0 {
			return usagef("--drain-timeout must be positive, got %s", drain)
		}
		return a.run(cmd.Context(), cfg, drain)
	}
	return cmd
}

func (a *app) run(ctx context.Context, cfg config.Config, drain time.Duration) error {
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
	scfg.DrainTimeout = drain
	svc, err := flows.NewService(scfg, flows.ServiceDeps{Pool: pool, API: client, Logger: log, Registry: reg, Metrics: metrics})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on RACEFLOW_HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	srv := flows.NewHTTPServer(svc.Handler())
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.WithError(err).Error("http server")
		}
	}()
	log.WithField("addr", ln.Addr().String()).Info("serving the status page, /healthz, /readyz and /metrics (every interface when the host part is empty)")

	runErr := svc.Run(ctx)
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		_ = srv.Close()
	}
	<-served
	if runErr != nil {
		return runErr
	}
	log.Info("raceflow run stopped")
	return nil
}
