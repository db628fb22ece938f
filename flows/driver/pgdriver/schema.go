package pgdriver

import (
	"context"
	stdsql "database/sql"
	"fmt"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/flows/driver"
)

// readCommittedQueue is the queue schema with READ COMMITTED subscriber
// transactions. The queue schema does not depend on transaction ids, so an
// unrelated long transaction cannot stall delivery (the log schema only
// delivers rows older than every open transaction in the cluster). The write
// stage runs inside the subscriber's transaction, and under the upstream
// default (REPEATABLE READ) two shards upserting the same meeting row fail
// with serialization errors that no retry inside the same transaction can
// fix. The queue schema does not need a snapshot: one subscriber owns each
// table and rows are locked FOR UPDATE.
type readCommittedQueue struct{ wsql.PostgreSQLQueueSchema }

func (readCommittedQueue) SubscribeIsolationLevel() stdsql.IsolationLevel {
	return stdsql.LevelReadCommitted
}

// schemaLock serialises topic table creation: upstream's queue schema runs
// CREATE TABLE IF NOT EXISTS without a lock, and two processes (or two
// subscriptions) creating the same table at once fail with a duplicate
// pg_class entry.
const schemaLock = 0x72616365 // "race"

// SchemaInitializingQueries creates the topic table under an advisory lock.
func (q readCommittedQueue) SchemaInitializingQueries(p wsql.SchemaInitializingQueriesParams) ([]wsql.Query, error) {
	queries, err := q.PostgreSQLQueueSchema.SchemaInitializingQueries(p)
	if err != nil {
		return nil, err
	}
	return append([]wsql.Query{{Query: "SELECT pg_advisory_xact_lock($1)", Args: []any{schemaLock}}}, queries...), nil
}

// RequiresTransaction makes watermill-sql run the initialisation in a
// transaction, so the advisory lock is held until the table exists.
func (readCommittedQueue) RequiresTransaction() bool { return true }

func queueSchema(batch int) readCommittedQueue {
	return readCommittedQueue{wsql.PostgreSQLQueueSchema{
		GeneratePayloadType: func(string) string { return "BYTEA" },
		SubscribeBatchSize:  batch,
	}}
}

// tablePrefix starts the name of every topic table.
const tablePrefix = "watermill_"

// Table is the quoted name of a topic's table.
func Table(t driver.Topic) string { return pgx.Identifier{tablePrefix + t.String()}.Sanitize() }

// Init creates the topics' tables; the tables that keep handled rows get a
// partial index on the unhandled ones, or every poll would scan them.
func (d *Driver) Init(ctx context.Context, topics []driver.Topic) error {
	sub, err := NewSubscriber(d.db, d.cfg, false, d.logger)
	if err != nil {
		return err
	}
	defer sub.Close()
	for _, t := range topics {
		if err := sub.SubscribeInitialize(t.String()); err != nil {
			return fmt.Errorf("pgdriver: initialise topic %s: %w", t, err)
		}
		if t.Kind.Kept() {
			idx := pgx.Identifier{tablePrefix + t.String() + "_unacked"}.Sanitize()
			if _, err := d.pool.Exec(ctx, `CREATE INDEX IF NOT EXISTS `+idx+` ON `+Table(t)+` ("offset") WHERE NOT acked`); err != nil {
				return fmt.Errorf("pgdriver: index topic %s: %w", t, err)
			}
		}
	}
	return nil
}
