package pgdriver

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/flows/driver"
)

// Stored reads the stored topic's tables.
func (d *Driver) Stored() (driver.StoredTopic, error) { return stored{d}, nil }

type stored struct{ d *Driver }

// tables lists the topic tables of the namespace that exist, parsed.
func (d *Driver) tables(ctx context.Context) ([]driver.Topic, error) {
	prefix := tablePrefix + d.cfg.Namespace + "."
	like := strings.NewReplacer(`\`, `\\`, `_`, `\_`, `%`, `\%`).Replace(prefix) + "%"
	rows, err := d.pool.Query(ctx, `
		SELECT c.relname FROM pg_class c
		WHERE c.relkind IN ('r', 'p') AND c.relnamespace = current_schema()::regnamespace AND c.relname LIKE $1`, like)
	if err != nil {
		return nil, fmt.Errorf("pgdriver: topic tables: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("pgdriver: topic tables: %w", err)
	}
	var out []driver.Topic
	for _, n := range names {
		if t, err := driver.ParseTopic(strings.TrimPrefix(n, tablePrefix)); err == nil && t.Namespace == d.cfg.Namespace {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b driver.Topic) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Shard, b.Shard))
	})
	return out, nil
}

// Topics lists the stored topic of every shard that has a table, whatever
// the shard count is now: polls stored under an earlier shard count are
// still there.
func (s stored) Topics(ctx context.Context) ([]driver.Topic, error) {
	all, err := s.d.tables(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(t driver.Topic) bool { return t.Kind != driver.Fetched }), nil
}

func (s stored) Scan(ctx context.Context, topic driver.Topic, raceIDs []string, fn func(driver.StoredPoll)) error {
	q := `SELECT "offset", COALESCE(metadata->>'race_id', ''), COALESCE(metadata->>'poll_id', ''),
		COALESCE(metadata->>'observed_at', '') FROM ` + Table(topic)
	var args []any
	if len(raceIDs) > 0 {
		q += ` WHERE metadata->>'race_id' = ANY($1)`
		args = append(args, raceIDs)
	}
	rows, err := s.d.pool.Query(ctx, q+` ORDER BY "offset"`, args...)
	if err != nil {
		return err
	}
	var p driver.StoredPoll
	_, err = pgx.ForEachRow(rows, []any{&p.Offset, &p.RaceID, &p.PollID, &p.ObservedAt}, func() error {
		fn(p)
		return nil
	})
	return err
}

func (s stored) Load(ctx context.Context, topic driver.Topic, offsets []int64, fn func(int64, *message.Message, error)) error {
	rows, err := s.d.pool.Query(ctx, `SELECT "offset", uuid, COALESCE(payload, ''::bytea), COALESCE(metadata::text, '{}')
		FROM `+Table(topic)+` WHERE "offset" = ANY($1)`, offsets)
	if err != nil {
		return err
	}
	var (
		offset  int64
		uuid    string
		payload []byte
		md      string
	)
	_, err = pgx.ForEachRow(rows, []any{&offset, &uuid, &payload, &md}, func() error {
		msg := message.NewMessage(uuid, slices.Clone(payload))
		meta, err := decodeMetadata([]byte(md))
		if err != nil {
			fn(offset, nil, fmt.Errorf("stored %w", err))
			return nil
		}
		if meta != nil {
			msg.Metadata = meta
		}
		fn(offset, msg, nil)
		return nil
	})
	return err
}

// Prune deletes handled stored polls created before cutoff, and results
// older than ResultRetention, oldest first, batch rows per statement so the
// live flow is never blocked for long. Unhandled stored polls stay:
// deleting one would lose a poll not yet transformed.
func (d *Driver) Prune(ctx context.Context, cutoff time.Time, batch int) (int64, error) {
	topics, err := d.tables(ctx)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, t := range topics {
		table := Table(t)
		// Through the primary key: created_at grows with the offset, so a
		// batch finds its rows at the start of the index.
		cond, before := `acked AND created_at < $1`, cutoff
		switch t.Kind {
		case driver.Fetched:
		case driver.Processed:
			cond, before = `created_at < $1`, time.Now().Add(-d.cfg.ResultRetention)
		default:
			continue
		}
		q := `DELETE FROM ` + table + ` WHERE "offset" IN (
			SELECT "offset" FROM ` + table + ` WHERE ` + cond + ` ORDER BY "offset" LIMIT $2)`
		for {
			tag, err := d.pool.Exec(ctx, q, before, batch)
			if err != nil {
				return total, fmt.Errorf("pgdriver: prune %s: %w", t, err)
			}
			total += tag.RowsAffected()
			if tag.RowsAffected() < int64(batch) {
				break
			}
		}
	}
	return total, nil
}

// QueueStats reads every topic table of the flow in one query: unhandled
// rows (through the partial index where handled rows are kept) and the age
// of the oldest, computed by the database against the created_at it wrote,
// so neither clock skew nor a simulated clock distorts it.
func (d *Driver) QueueStats(ctx context.Context) ([]driver.QueueStat, error) {
	topics, err := d.tables(ctx)
	if err != nil || len(topics) == 0 {
		return nil, err
	}
	parts := make([]string, len(topics))
	for i, t := range topics {
		cond := ` WHERE NOT acked`
		if t.Kind == driver.Poison {
			cond = "" // every poisoned message is waiting for someone
		}
		parts[i] = fmt.Sprintf(`SELECT %d, count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 FROM %s%s`,
			i, Table(t), cond)
	}
	rows, err := d.pool.Query(ctx, strings.Join(parts, " UNION ALL "))
	if err != nil {
		return nil, fmt.Errorf("pgdriver: queue stats: %w", err)
	}
	out := make([]driver.QueueStat, len(topics))
	var (
		i   int
		n   int64
		age float64
	)
	if _, err := pgx.ForEachRow(rows, []any{&i, &n, &age}, func() error {
		out[i] = driver.QueueStat{Topic: topics[i], Backlog: n, OldestAge: time.Duration(age * float64(time.Second))}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("pgdriver: queue stats: %w", err)
	}
	return out, nil
}

// Drop deletes every topic table of the namespace.
func (d *Driver) Drop(ctx context.Context) error {
	topics, err := d.tables(ctx)
	if err != nil {
		return err
	}
	for _, t := range topics {
		if _, err := d.pool.Exec(ctx, `DROP TABLE IF EXISTS `+Table(t)); err != nil {
			return fmt.Errorf("pgdriver: drop %s: %w", t, err)
		}
		d.ensured.Delete(t.String())
		d.ensured.Delete(t.String() + "#keyed")
	}
	return nil
}
