package bench

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// dbCPU measures what the database server's backends of the benchmark's
// database spent: their CPU as /proc shows it, which works when the server
// runs on this machine and its processes are readable (a server elsewhere
// reports nothing). Backends that end during the run take their time with
// them, those that start count from zero; the flow's connections live as
// long as it does, so neither matters.
type dbCPU struct {
	pool  *pgxpool.Pool
	start map[int]time.Duration
}

// startDBCPU reads the backends' CPU now; nil when it cannot.
func startDBCPU(ctx context.Context, pool *pgxpool.Pool) *dbCPU {
	m := backendCPU(ctx, pool)
	if m == nil {
		return nil
	}
	return &dbCPU{pool: pool, start: m}
}

// since is the backends' CPU since the start; false when unmeasured.
func (c *dbCPU) since(ctx context.Context) (time.Duration, bool) {
	if c == nil {
		return 0, false
	}
	end := backendCPU(ctx, c.pool)
	if end == nil {
		return 0, false
	}
	var total time.Duration
	for pid, cpu := range end {
		total += cpu - c.start[pid]
	}
	return total, true
}

// backendCPU maps each backend of the pool's database to its CPU; nil when
// the server's processes cannot be read.
func backendCPU(ctx context.Context, pool *pgxpool.Pool) map[int]time.Duration {
	rows, err := pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		return nil
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil
	}
	out := make(map[int]time.Duration, len(pids))
	for _, pid := range pids {
		if cpu, ok := pidCPU(int(pid)); ok {
			out[int(pid)] = cpu
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Ways the benchmark's connections reach the server (Metadata.DBConnection).
const (
	ConnUnixSocket = "Unix socket"
	ConnTCP        = "TCP"
	ConnTCPWithTLS = "TCP with TLS"
)

// sqlConnection asks the server how this session reached it: a session
// over a Unix socket has no client address, and pg_stat_ssl says whether a
// TCP one negotiated TLS. Each round trip over TCP with TLS costs both sides
// more than over the socket (docs/BENCHMARKS.md, sitting I), so a figure
// means little without it.
const sqlConnection = `SELECT CASE
    WHEN inet_client_addr() IS NULL THEN '` + ConnUnixSocket + `'
    WHEN COALESCE((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false) THEN '` + ConnTCPWithTLS + `'
    ELSE '` + ConnTCP + `' END`

// connection says how the pool's connections reach the server; empty when
// the server cannot say.
func connection(ctx context.Context, pool *pgxpool.Pool) string {
	var kind string
	if err := pool.QueryRow(ctx, sqlConnection).Scan(&kind); err != nil {
		return ""
	}
	return kind
}
