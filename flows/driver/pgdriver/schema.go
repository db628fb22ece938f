package pgdriver

import (
	"context"
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
)

// A topic is a table "watermill_<topic>" (the name and first columns are
// those of watermill-sql's queue schema, which earlier releases used, so
// their tables and messages carry over):
//
//	offset       the message's place in the topic
//	uuid         its id
//	payload      its body
//	metadata     its metadata (JSON)
//	acked        handled (only kept topics keep handled rows)
//	created_at   when it was published
//	race_id      the race it belongs to ('' for none): keyed topics hand out
//	             several messages at once, never two of one race
//	deliveries   how often it was handed out (durably counted)
//	lease_owner  the subscription handling it now, if any
//	lease_until  until when that lease holds; after a nack, when the
//	             message may be handed out again
//	last_error   why its last handling failed
const tablePrefix = "watermill_"

// schemaLock serialises table creation: two processes creating the same
// table at once would fail with a duplicate catalogue entry.
const schemaLock = 0x72616365 // "race"

// Table is the quoted name of a topic's table.
func Table(t driver.Topic) string { return tableOf(t.String()) }

func tableOf(topic string) string { return pgx.Identifier{tablePrefix + topic}.Sanitize() }

// indexOf is the quoted name of one of a topic table's indexes.
func indexOf(topic, suffix string) string {
	return pgx.Identifier{tablePrefix + topic + "_" + suffix}.Sanitize()
}

// validTopic refuses names that could not be a table name as they are.
func validTopic(topic string) error {
	if topic == "" || len(tablePrefix+topic) > 63 || strings.ContainsAny(topic, "\x00\"") {
		return fmt.Errorf("pgdriver: %q is not a usable topic name", topic)
	}
	return nil
}

// schemaSQL creates a topic's table and indexes, and adds the columns this
// driver needs to a table an earlier release created.
func schemaSQL(topic string) []string {
	t := tableOf(topic)
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + t + ` (
			"offset" BIGSERIAL PRIMARY KEY,
			"uuid" VARCHAR(36) NOT NULL,
			"payload" BYTEA DEFAULT NULL,
			"metadata" JSON DEFAULT NULL,
			"acked" BOOLEAN NOT NULL DEFAULT FALSE,
			"created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP)`,
		`ALTER TABLE ` + t + `
			ADD COLUMN IF NOT EXISTS race_id TEXT NOT NULL DEFAULT '',
			ADD COLUMN IF NOT EXISTS deliveries INTEGER NOT NULL DEFAULT 0,
			ADD COLUMN IF NOT EXISTS lease_owner TEXT,
			ADD COLUMN IF NOT EXISTS lease_until TIMESTAMP WITH TIME ZONE,
			ADD COLUMN IF NOT EXISTS last_error TEXT`,
		// Unhandled rows, in order: what every claim looks for.
		`CREATE INDEX IF NOT EXISTS ` + indexOf(topic, "unacked") + ` ON ` + t + ` ("offset") WHERE NOT acked`,
	}
}

// keyedSQL creates the index a keyed claim probes: a race's unhandled
// rows. Only a topic subscribed keyed gets it (the poll topics); on the
// others every insert would maintain it for no reader.
func keyedSQL(topic string) string {
	return `CREATE INDEX IF NOT EXISTS ` + indexOf(topic, "race") + ` ON ` + tableOf(topic) + ` (race_id, "offset") WHERE NOT acked`
}

// ensureTable creates a topic's table, once per driver.
func (d *Driver) ensureTable(ctx context.Context, topic string) error {
	return d.ensureSchema(ctx, topic, "", schemaSQL(topic))
}

// ensureKeyed creates a topic's table and the index of its keyed claims,
// once per driver.
func (d *Driver) ensureKeyed(ctx context.Context, topic string) error {
	if err := d.ensureTable(ctx, topic); err != nil {
		return err
	}
	return d.ensureSchema(ctx, topic, "#keyed", []string{keyedSQL(topic)})
}

// ensureSchema runs stmts for topic under the schema lock, unless done
// before (remembered as topic+part).
func (d *Driver) ensureSchema(ctx context.Context, topic, part string, stmts []string) error {
	if _, ok := d.ensured.Load(topic + part); ok {
		return nil
	}
	if err := validTopic(topic); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, schemaLock); err != nil {
			return err
		}
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgdriver: initialise topic %s: %w", topic, err)
	}
	d.ensured.Store(topic+part, struct{}{})
	return nil
}

// Init creates the topics' tables.
func (d *Driver) Init(ctx context.Context, topics []driver.Topic) error {
	for _, t := range topics {
		if err := d.ensureTable(ctx, t.String()); err != nil {
			return err
		}
	}
	return nil
}

// row is one message as inserted.
type row struct {
	uuid     string
	payload  []byte
	metadata string
	raceID   string
}

// rowOf encodes msg for its table; it is done at publishing, so a caller
// may reuse the message afterwards.
func rowOf(msg *message.Message) (row, error) {
	md, err := encodeMetadata(msg.Metadata)
	if err != nil {
		return row{}, fmt.Errorf("pgdriver: encode metadata of %s: %w", msg.UUID, err)
	}
	return row{uuid: msg.UUID, payload: msg.Payload, metadata: string(md), raceID: msg.Metadata.Get(handlers.KeyRaceID)}, nil
}

// insertSQL inserts rows into topic's table in one statement.
func insertSQL(topic string, rows []row) (string, []any) {
	var b strings.Builder
	b.WriteString(`INSERT INTO ` + tableOf(topic) + ` (uuid, payload, metadata, race_id) VALUES `)
	args := make([]any, 0, 4*len(rows))
	for i, r := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		n := len(args)
		fmt.Fprintf(&b, "($%d,$%d,$%d,$%d)", n+1, n+2, n+3, n+4)
		args = append(args, r.uuid, r.payload, r.metadata, r.raceID)
	}
	return b.String(), args
}

// decode builds a message from a row's columns.
func decode(uuid string, payload, metadata []byte) (*message.Message, error) {
	msg := message.NewMessage(uuid, payload)
	if len(metadata) > 0 {
		md, err := decodeMetadata(metadata)
		if err != nil {
			return nil, fmt.Errorf("pgdriver: message %s: %w", uuid, err)
		}
		if md != nil {
			msg.Metadata = md
		}
	}
	return msg, nil
}
