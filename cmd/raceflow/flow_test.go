package main

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/internal/natstest"
)

// fansOut reports whether results on this backend reach every instance,
// asking its driver.
func fansOut(t *testing.T, backend, dsn, natsURL, namespace string) bool {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	defer pool.Close()
	cfg := flows.DefaultConfig()
	cfg.Backend, cfg.Namespace, cfg.NATS.URL = backend, namespace, natsURL
	log := logrus.New()
	log.SetOutput(io.Discard)
	drv, err := flows.OpenDriver(cfg, pool, log)
	require.NoError(t, err)
	defer drv.Close()
	return drv.FansOutResults()
}

func TestProcessGetsItsResultsWhileARunWorksTheSameFlow(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{config.BackendPostgres, config.BackendNATS} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			sim, api := apiSimNow(t, 13)
			env := map[string]string{
				"DATABASE_URL": freshDB(t), "NZTAB_API_URL": api, "RACEFLOW_PUBSUB": backend,
				"RACEFLOW_HTTP_ADDR": "127.0.0.1:0", "LOG_LEVEL": "info", "LOG_FORMAT": "json",
			}
			ns := config.DefaultNamespace
			if backend == config.BackendNATS {
				env["NATS_URL"] = natstest.URL(t)
				ns = natstest.Namespace(t, env["NATS_URL"]) // its streams are deleted afterwards
				env["RACEFLOW_NAMESPACE"] = ns
			}
			if !fansOut(t, backend, env["DATABASE_URL"], env["NATS_URL"], ns) {
				t.Skipf("results on %s reach one instance only: process and run would take each other's results", backend)
			}
			run := start(t, env, "run")
			// The run works the flow's shards ("pipeline end", or on a busy
			// machine "pipeline end: slow poll").
			run.waitFor(t, `"msg":"pipeline end`)

			env["LOG_LEVEL"] = "error"
			r := raceflow(t, env, "process", sim.Races()[0].ID, "--json", "--timeout", "1m")
			require.Equal(t, 0, r.code, r)
			rs := jsonResults(t, r.stdout)
			require.Len(t, rs, 1)
			require.Equal(t, handlers.StatusSuccess, rs[0].Status)

			require.NoError(t, run.cmd.Process.Signal(os.Interrupt))
			done := run.wait(t)
			require.Equal(t, 0, done.code, "run ends cleanly on an interrupt: %s", done)
		})
	}
}
