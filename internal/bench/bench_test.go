package bench

import (
	"context"
	"crypto/tls"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/internal/pgtest"
	"github.com/raceflow/raceflow/stages/nztab"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// shortRun is the CI short mode: a real run, small enough to take seconds.
func shortRun(t *testing.T, backend string, ids func(*Sim) []string, mutate func(*Config)) (*Report, *Sim, *pgtest.DB) {
	t.Helper()
	db := pgtest.New(t)
	sim, err := NewSim(SimConfig{Seed: 1, Races: 2, Steps: 3})
	require.NoError(t, err)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	client, err := nztab.NewClient(nztab.ClientConfig{
		BaseURL: srv.URL + "/affiliates/v1", FromEmail: "test@example.com", PartnerName: "test", PartnerID: "test",
		Timeout: 10 * time.Second,
	})
	require.NoError(t, err)
	log := logrus.New()
	log.SetOutput(io.Discard)
	if testing.Verbose() {
		log.SetOutput(os.Stderr)
	}
	log.SetLevel(logrus.WarnLevel)

	cfg := DefaultConfig()
	cfg.Races, cfg.Iterations, cfg.Concurrency, cfg.Warmup = 2, 2, 2, 1
	cfg.Flow.Backend = backend
	cfg.IterationTimeout = time.Minute
	if mutate != nil {
		mutate(&cfg)
	}
	var mu sync.Mutex
	var progress []Progress
	rep, err := Run(context.Background(), cfg, Deps{
		Pool: db.Pool, Fetcher: client, Logger: log, RaceIDs: ids(sim),
		BeforeIteration: func() { sim.Advance() }, APICPU: sim.CPU,
		Progress: func(p Progress) {
			mu.Lock()
			defer mu.Unlock()
			progress = append(progress, p)
		},
	})
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, progress)
	last := progress[len(progress)-1]
	require.Equal(t, Progress{Iteration: 2, Iterations: 2, Done: 2, Total: 2}, last)
	return rep, sim, db
}

func requireOrdered(t *testing.T, name string, s Stats) {
	t.Helper()
	require.LessOrEqual(t, s.Min, s.P50, name)
	require.LessOrEqual(t, s.P50, s.P95, name)
	require.LessOrEqual(t, s.P95, s.P99, name)
	require.LessOrEqual(t, s.P99, s.Max, name)
	require.LessOrEqual(t, s.Min, s.Avg, name)
	require.LessOrEqual(t, s.Avg, s.Max, name)
}

func TestRunShortModeReportsConsistentFiguresOnBothBackends(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{config.BackendPostgres, config.BackendMemory} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			rep, sim, db := shortRun(t, backend, (*Sim).RaceIDs, func(c *Config) { c.BatchTarget = time.Hour })
			require.True(t, rep.Passed(), rep.Failures())

			require.Equal(t, backend, rep.Metadata.Backend)
			require.Equal(t, 3*2, int(sim.Requests()), "one fetch per poll, warm-up included")
			require.Equal(t, WarmupStats{Iterations: 1, Polls: 2}, rep.Warmup)
			require.Len(t, rep.Iterations, 2)
			require.Len(t, rep.Runs, 4)
			for _, r := range rep.Runs {
				require.True(t, r.Success, "%+v", r)
				require.Positive(t, r.FetchMS)
				require.Positive(t, r.TransformMS)
				require.Positive(t, r.WriteMS)
				require.Positive(t, r.DetectMS)
				require.InDelta(t, r.TotalMS, r.FetchMS+r.TransformMS+r.WriteMS+r.DetectMS+r.QueueMS, 0.01)
			}
			s := rep.Summary
			for name, st := range map[string]Stats{"fetch": s.Fetch, "transform": s.Transform, "write": s.Write, "queue": s.Queue, "total": s.Total} {
				require.Equal(t, 4, st.N, name)
				requireOrdered(t, name, st)
			}
			require.Equal(t, 2, s.BatchWall.N)
			requireOrdered(t, "batch_wall", s.BatchWall)
			// A batch lasts at least as long as its slowest poll.
			require.GreaterOrEqual(t, s.BatchWall.Max, s.Total.Max*0.99)

			require.Equal(t, 4, rep.Throughput.Polls)
			require.Equal(t, 4, rep.Throughput.Succeeded)
			require.InDelta(t, float64(4)/rep.Throughput.WallSeconds, rep.Throughput.PollsPerSecond, 1e-6)
			require.Positive(t, rep.Resources.CPUMS)
			require.Positive(t, rep.Resources.PeakRSSMB)
			require.GreaterOrEqual(t, rep.Resources.MachineBusyPct, 0.0)
			require.LessOrEqual(t, rep.Resources.MachineBusyPct, 100.0)
			if rep.Resources.DBCPUMeasured { // a server on this machine
				// /proc counts CPU in 10 ms ticks, and four polls' writes may
				// take less: TestDBCPUCountsTheBackendsWork proves the count.
				require.GreaterOrEqual(t, rep.Resources.DBCPUMS, 0.0)
				require.InDelta(t, rep.Resources.DBCPUMS/float64(rep.Throughput.Polls), rep.Resources.DBCPUMSPerPoll, 1e-9)
			}
			require.Len(t, rep.Checks, 1)
			require.True(t, rep.Checks[0].Passed)
			require.Equal(t, db.Pool.Stat().MaxConns(), rep.Pool.MaxConns)
			require.Positive(t, rep.Pool.Acquires, "every write takes a connection")
			require.Positive(t, rep.Pool.PeakAcquired)
			require.LessOrEqual(t, rep.Pool.PeakAcquired, rep.Pool.MaxConns)
			require.LessOrEqual(t, rep.Pool.WaitedAcquires, rep.Pool.Acquires)

			// The files hold the same figures.
			paths, err := WriteFiles(t.TempDir(), []string{FormatJSON, FormatCSV}, rep)
			require.NoError(t, err)
			raw, err := os.ReadFile(paths[0])
			require.NoError(t, err)
			var doc struct {
				Summary map[string]map[string]float64 `json:"summary"`
				Runs    []map[string]any              `json:"runs"`
			}
			require.NoError(t, json.Unmarshal(raw, &doc))
			require.Len(t, doc.Runs, 4)
			for _, measure := range []string{"fetch", "transform", "write", "queue", "total", "batch_wall"} {
				for _, stat := range []string{"min", "avg", "p50", "p95", "p99", "max"} {
					require.Contains(t, doc.Summary[measure], stat, measure)
				}
			}
			require.InDelta(t, s.Total.P50, doc.Summary["total"]["p50"], 1e-9)
			f, err := os.Open(paths[1])
			require.NoError(t, err)
			defer f.Close()
			rows, err := csv.NewReader(f).ReadAll()
			require.NoError(t, err)
			require.Len(t, rows, 1+4)
			require.Equal(t, CSVHeader, rows[0])
		})
	}
}

func TestRunReportsFailedPollsAndMissedTargets(t *testing.T) {
	t.Parallel()
	const missing = "00000000-0000-4000-8000-000000000000"
	unknown := func(s *Sim) []string { return []string{s.RaceIDs()[0], missing} }
	rep, _, _ := shortRun(t, config.BackendMemory, unknown, func(c *Config) { c.BatchTarget = time.Nanosecond })
	require.False(t, rep.Passed())
	require.Equal(t, 2, rep.Throughput.Failed)
	require.Equal(t, 1, rep.Warmup.Failed)
	for _, r := range rep.Runs {
		if r.RaceID == missing {
			require.False(t, r.Success)
			require.NotEmpty(t, r.ErrorType)
			require.NotEmpty(t, r.ErrorMessage)
		} else {
			require.True(t, r.Success, "%+v", r)
		}
	}
	require.Equal(t, 2, rep.Summary.Total.N, "summaries cover successful polls")
	require.Contains(t, rep.Failures(), "2 of 4 polls failed")
	require.False(t, rep.Checks[0].Passed)
}

func TestRunRejectsTooFewRaceIDs(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Races = 3
	_, err := Run(context.Background(), cfg, Deps{Pool: nil, Fetcher: nil, Logger: logrus.New(), RaceIDs: []string{"a"}})
	require.ErrorContains(t, err, "3 races asked for, 1 race ids given")
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"default", func(*Config) {}, ""},
		{"no races", func(c *Config) { c.Races = 0 }, "races"},
		{"no iterations", func(c *Config) { c.Iterations = 0 }, "iterations"},
		{"no concurrency", func(c *Config) { c.Concurrency = 0 }, "concurrency"},
		{"negative warm-up", func(c *Config) { c.Warmup = -1 }, "warmup"},
		{"no timeout", func(c *Config) { c.IterationTimeout = 0 }, "timeout"},
		{"negative target", func(c *Config) { c.BatchTarget = -time.Second }, "targets"},
		{"bad flow", func(c *Config) { c.Flow.Backend = "kafka" }, "backend"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestDBCPUCountsTheBackendsWork(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	c := startDBCPU(ctx, db.Pool)
	if c == nil {
		t.Skip("the database server's processes cannot be read here (a server on another machine)")
	}
	// Hundreds of milliseconds of CPU in one backend of the database, many
	// times /proc's 10 ms tick.
	var n int64
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM generate_series(1, 3000000) g WHERE g % 7 = 0`).Scan(&n))
	require.Equal(t, int64(428571), n)
	spent, ok := c.since(ctx)
	require.True(t, ok)
	require.GreaterOrEqual(t, spent, 20*time.Millisecond, "the backend that ran the query used CPU")
}

func TestConnectionSaysHowTheSessionReachesTheServer(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	for _, tc := range []struct {
		name string
		// adjust the test database's connection settings; want is the
		// kind that must come back, empty for whatever the client's own
		// socket shows.
		adjust func(*pgconn.Config)
		want   string
	}{
		{name: "as configured", adjust: func(*pgconn.Config) {}},
		{name: "TCP with TLS", want: ConnTCPWithTLS, adjust: func(c *pgconn.Config) {
			// The configured server, with TLS required (a test server's
			// certificate is its own).
			c.TLSConfig, c.Fallbacks = &tls.Config{InsecureSkipVerify: true}, nil
		}},
		{name: "Unix socket", want: ConnUnixSocket, adjust: func(c *pgconn.Config) {
			c.Host, c.TLSConfig, c.Fallbacks = "/var/run/postgresql", nil, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			cfg := db.Pool.Config().Copy()
			tc.adjust(&cfg.ConnConfig.Config)
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			conn, err := pool.Acquire(ctx)
			if err != nil && tc.want != "" {
				t.Skipf("the test server cannot be reached %s here: %v", tc.want, err)
			}
			require.NoError(t, err)
			// The client's own view of its socket, independent of the server's.
			nc := conn.Conn().PgConn().Conn()
			client := ConnTCP
			if _, ok := nc.(*tls.Conn); ok {
				client = ConnTCPWithTLS
			} else if nc.RemoteAddr().Network() == "unix" {
				client = ConnUnixSocket
			}
			conn.Release()
			if tc.want != "" {
				require.Equal(t, tc.want, client, "the client's socket")
			}
			require.Equal(t, client, connection(ctx, pool), "the server's view of the session")
		})
	}
}
