package schedule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sirupsen/logrus"
)

// DefaultLeaderKey is the advisory-lock key of the raceflow scheduler; all
// replicas sharing a database campaign for it.
const DefaultLeaderKey int64 = 0x7261636566 // "racef"

// LeaderConfig shapes the campaign. Start from DefaultLeaderConfig.
type LeaderConfig struct {
	// RetryInterval is how often a follower tries to take the lock.
	RetryInterval time.Duration
	// PingInterval is how often the leader checks that its lock connection
	// (and so the lock) is still alive.
	PingInterval time.Duration
	// PingTimeout is how long a ping may take before the connection counts
	// as lost. A ping cut short closes the connection, which drops the lock
	// only when its server session ends, so this must outlast a ping on a
	// busy machine; it is apart from PingInterval so a short interval does
	// not make a slow answer a lost lock.
	PingTimeout time.Duration
}

// DefaultLeaderConfig campaigns every 2 s and checks the lock every 3 s,
// giving each check 3 s.
func DefaultLeaderConfig() LeaderConfig {
	return LeaderConfig{RetryInterval: 2 * time.Second, PingInterval: 3 * time.Second, PingTimeout: 3 * time.Second}
}

// Validate checks the configuration.
func (c LeaderConfig) Validate() error {
	var errs []error
	if c.RetryInterval <= 0 {
		errs = append(errs, fmt.Errorf("schedule: leader RetryInterval %s must be positive", c.RetryInterval))
	}
	if c.PingInterval <= 0 {
		errs = append(errs, fmt.Errorf("schedule: leader PingInterval %s must be positive", c.PingInterval))
	}
	if c.PingTimeout <= 0 {
		errs = append(errs, fmt.Errorf("schedule: leader PingTimeout %s must be positive", c.PingTimeout))
	}
	return errors.Join(errs...)
}

// Leader elects one process among those sharing a database, with a
// PostgreSQL session advisory lock held on a connection of its own: the lock
// lives exactly as long as that connection, so a crashed or partitioned
// leader loses it when the server drops the session, and nothing needs a
// lease table or clock agreement.
//
// A lock connection the server has already dropped is noticed at the next
// ping, so for up to PingInterval two processes may both believe they lead.
// The work run under the lock must tolerate that (the scheduler does: polls
// are idempotent).
type Leader struct {
	pool *pgxpool.Pool
	key  int64
	cfg  LeaderConfig
	log  logrus.FieldLogger

	leading  atomic.Bool
	attempts atomic.Int64
}

// NewLeader returns a Leader campaigning for key on pool's database; cfg is
// validated and log may be nil.
func NewLeader(pool *pgxpool.Pool, key int64, cfg LeaderConfig, log logrus.FieldLogger) (*Leader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pool == nil {
		return nil, errors.New("schedule: leader needs a pool")
	}
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	return &Leader{pool: pool, key: key, cfg: cfg, log: log.WithFields(logrus.Fields{"component": "leader", "lock_key": key})}, nil
}

// Leading reports whether this Leader holds the lock now.
func (l *Leader) Leading() bool { return l.leading.Load() }

// Attempts is how many times this Leader has tried to take the lock.
func (l *Leader) Attempts() int { return int(l.attempts.Load()) }

// Run campaigns until it holds the lock, then runs fn with a context that is
// cancelled when ctx ends or the lock is lost. After losing the lock it
// campaigns again from the next RetryInterval. It returns nil when ctx ends, and fn's error (or nil) when
// fn returns by itself while leading; either way the lock is released.
func (l *Leader) Run(ctx context.Context, fn func(context.Context) error) error {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			l.release(ctx, conn)
		}
	}()
	for {
		if conn == nil {
			c, err := l.connect(ctx)
			if err != nil && ctx.Err() == nil {
				l.log.WithError(err).Warn("leader: no lock connection; retrying")
			}
			conn = c
		}
		if conn != nil {
			l.attempts.Add(1)
			var got bool
			if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, l.key).Scan(&got); err != nil {
				if ctx.Err() == nil {
					l.log.WithError(err).Warn("leader: lock attempt failed; reconnecting")
				}
				closeConn(conn)
				conn = nil
			} else if got {
				lost, err := l.lead(ctx, conn, fn)
				if !lost {
					return err // the deferred release unlocks
				}
				// The connection is dead and the server has released (or
				// will release) the lock. Wait like any follower: a process
				// that just lost its database link should not outrun a
				// healthy one to the lock.
				closeConn(conn)
				conn = nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(l.cfg.RetryInterval):
		}
	}
}

// connect takes a connection out of the pool for good, so the pool can
// neither reuse it for other work nor close it under the lock.
func (l *Leader) connect(ctx context.Context) (*pgx.Conn, error) {
	pc, err := l.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("schedule: leader connection: %w", err)
	}
	return pc.Hijack(), nil
}

// lead runs fn while the lock is held. lost reports that the lock connection
// died (fn's context was cancelled for that reason).
func (l *Leader) lead(ctx context.Context, conn *pgx.Conn, fn func(context.Context) error) (lost bool, err error) {
	l.leading.Store(true)
	defer l.leading.Store(false)
	l.log.Info("leader: elected")
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var lostFlag atomic.Bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-lctx.Done():
				return
			case <-time.After(l.cfg.PingInterval):
			}
			// Not derived from lctx: cancelling a query makes pgx close the
			// connection, which would drop the lock behind release's back
			// (the server frees it only when that backend exits).
			pctx, pcancel := context.WithTimeout(context.WithoutCancel(lctx), l.cfg.PingTimeout)
			err := conn.Ping(pctx)
			pcancel()
			if err != nil && lctx.Err() == nil {
				l.log.WithError(err).Error("leader: lock connection lost; stepping down")
				lostFlag.Store(true)
				cancel()
				return
			}
		}
	}()
	err = fn(lctx)
	cancel()
	wg.Wait() // the pinger no longer uses conn
	if lostFlag.Load() && ctx.Err() == nil {
		return true, nil
	}
	if err != nil && ctx.Err() == nil {
		err = fmt.Errorf("schedule: leader work: %w", err)
	} else if ctx.Err() != nil {
		err = nil
	}
	return false, err
}

// release unlocks and closes the lock connection, within a short deadline
// even when ctx has already ended.
func (l *Leader) release(ctx context.Context, conn *pgx.Conn) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(rctx, `SELECT pg_advisory_unlock($1)`, l.key); err != nil {
		l.log.WithError(err).Debug("leader: unlock failed; closing the connection releases the lock")
	}
	_ = conn.Close(rctx)
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
