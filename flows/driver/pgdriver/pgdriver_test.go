package pgdriver_test

import (
	"io"
	"log"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/flows/driver/drivertest"
	"github.com/raceflow/raceflow/flows/driver/pgdriver"
	"github.com/raceflow/raceflow/internal/pgtest"
)

func TestMain(m *testing.M) {
	// Watermill's universal suite logs every bulk read and resend through the
	// standard logger (hundreds of lines); its failures are reported through
	// the test, so the lines say nothing a failure would not.
	log.SetOutput(io.Discard)
	pgtest.Main(m)
}

func TestDriverConformance(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	drivertest.Run(t, drivertest.Harness{
		Open: func(t *testing.T, namespace string) driver.Driver {
			cfg := pgdriver.DefaultConfig()
			cfg.Namespace = namespace
			d, err := pgdriver.Open(cfg, db.Pool, watermill.NopLogger{})
			require.NoError(t, err)
			return d
		},
		TransactionalHandoff: true,
		Prunes:               true,
		Keyed:                true,
		KeepsLastError:       true,
	})
}

// Watermill's universal pub/sub suite against the exact publisher and
// subscriber configurations the driver runs topics on: a strictly ordered
// hand-off (handled rows deleted), the stored topic (handled rows kept), and
// the poll topics (several races at once, each in order). Every pub/sub the
// suite makes shares one driver, as the processes of a flow share the
// database.
func TestUniversalPubSubSuite(t *testing.T) {
	for _, tc := range []struct {
		name     string
		keep     bool
		parallel int
	}{
		{"hand-off", false, 1},
		{"stored-topic", true, 1},
		{"keyed", false, 8},
		// The stored topic as the write stage consumes it.
		{"stored-topic-keyed", true, config.DefaultWriteConcurrency},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t)
			cfg := pgdriver.DefaultConfig()
			// The suite nacks a message hundreds of times in a row; a small
			// cap keeps the backoff path in play without minutes of waiting.
			cfg.RedeliveryMax = 10 * time.Millisecond
			d, err := pgdriver.Open(cfg, db.Pool, watermill.NopLogger{})
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, d.Close()) })
			tests.TestPubSub(t, tests.Features{
				ConsumerGroups:      false,
				ExactlyOnceDelivery: true,
				GuaranteedOrder:     true,
				Persistent:          true,
			}, func(t *testing.T) (message.Publisher, message.Subscriber) {
				return d.Publisher(), d.NewSubscriber(tc.keep, tc.parallel)
			}, nil)
		})
	}
}

func TestConfigValidateNamesWhatIsWrong(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(*pgdriver.Config)
		want   string
	}{
		{"ok", func(*pgdriver.Config) {}, ""},
		{"bad namespace", func(c *pgdriver.Config) { c.Namespace = `x"; DROP TABLE races; --` }, "namespace"},
		{"no poll interval", func(c *pgdriver.Config) { c.FallbackPoll = 0 }, "poll interval"},
		{"tiny lease", func(c *pgdriver.Config) { c.Lease = time.Millisecond }, "lease"},
		{"no ack deadline", func(c *pgdriver.Config) { c.AckDeadline = 0 }, "ack deadline"},
		{"bad listen url", func(c *pgdriver.Config) { c.ListenURL = "postgres://u:s3cret@host:notaport/db" }, "listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := pgdriver.DefaultConfig()
			tc.change(&c)
			err := c.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestMessageWithUnreadableMetadataIsHandedOutWithoutIt(t *testing.T) {
	t.Parallel()
	const topic = "unreadable"
	db, sub := subscriberOn(t, pgdriver.DefaultConfig(), topic)
	// Valid JSON (the column's type insists) that is no metadata map.
	_, err := db.Pool.Exec(t.Context(), `INSERT INTO "watermill_`+topic+`" (uuid, payload, metadata) VALUES ('u1', 'body', '[1, 2]')`)
	require.NoError(t, err)

	msg := handedOut(t, sub, topic)
	require.Equal(t, "u1", msg.UUID)
	require.Equal(t, "body", string(msg.Payload))
	require.Empty(t, msg.Metadata)
	msg.Ack()
}

// A lease that runs out is announced by nobody: no commit wakes the
// subscription and no notification is sent. The fallback look finds the
// message once its lease is over, and the subscription claims it.
func TestMessageWhoseLeaseRunsOutIsFoundByTheFallbackLook(t *testing.T) {
	t.Parallel()
	const topic = "lease-runs-out"
	cfg := pgdriver.DefaultConfig()
	cfg.FallbackPoll = 50 * time.Millisecond
	db, sub := subscriberOn(t, cfg, topic)
	// Leased for two more seconds by a process that died: the subscription's
	// first claim, at once, cannot take it.
	_, err := db.Pool.Exec(t.Context(), `INSERT INTO "watermill_`+topic+`" (uuid, payload, metadata, deliveries, lease_owner, lease_until)
		VALUES ('u1', 'body', '{}', 1, 'a dead process', now() + interval '2 seconds')`)
	require.NoError(t, err)

	msg := handedOut(t, sub, topic)
	require.Equal(t, "u1", msg.UUID)
	msg.Ack()
}

// subscriberOn opens a driver with cfg on a database of its own and a
// strictly ordered subscriber, with topic's table made, for tests that put
// rows into the table themselves.
func subscriberOn(t *testing.T, cfg pgdriver.Config, topic string) (*pgtest.DB, message.Subscriber) {
	t.Helper()
	db, d := openDriver(t, cfg)
	sub := d.NewSubscriber(false, 1)
	t.Cleanup(func() { require.NoError(t, sub.Close()) })
	require.NoError(t, sub.(message.SubscribeInitializer).SubscribeInitialize(topic))
	return db, sub
}

// openDriver opens a driver with cfg on a database of its own; it closes
// with the test.
func openDriver(t *testing.T, cfg pgdriver.Config) (*pgtest.DB, *pgdriver.Driver) {
	t.Helper()
	db := pgtest.New(t)
	d, err := pgdriver.Open(cfg, db.Pool, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return db, d
}

// handedOut subscribes to topic and returns the first message handed out,
// failing the test when none comes within a minute.
func handedOut(t *testing.T, sub message.Subscriber, topic string) *message.Message {
	t.Helper()
	msgs, err := sub.Subscribe(t.Context(), topic)
	require.NoError(t, err)
	select {
	case msg := <-msgs:
		return msg
	case <-time.After(time.Minute):
		t.Fatalf("no message of %s was handed out", topic)
		return nil
	}
}

// A hand-off's outputs and its acknowledgement are one transaction: the
// batch that carries them has no BEGIN or COMMIT, and PostgreSQL runs a
// pipelined batch as one transaction. When the acknowledgement finds the
// message leased to someone else, the output inserted before it in that
// batch must be gone with it.
func TestHandOffWhoseMessageWasTakenOverPublishesNothing(t *testing.T) {
	t.Parallel()
	const in, out = "taken-over-in", "taken-over-out"
	db := pgtest.New(t)
	logs := &dropLog{dropped: make(chan string, 1)}
	d, err := pgdriver.Open(pgdriver.DefaultConfig(), db.Pool, logs)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	sub := d.NewSubscriber(false, 1)
	t.Cleanup(func() { require.NoError(t, sub.Close()) })
	require.NoError(t, d.Publisher().Publish(in, message.NewMessage("in-1", []byte("input"))))

	msg := handedOut(t, sub, in)
	_, err = db.Pool.Exec(t.Context(), `UPDATE "watermill_`+in+`" SET lease_owner = 'another process'`)
	require.NoError(t, err)
	o := message.NewMessage("out-1", []byte("output"))
	o.SetContext(msg.Context())
	require.NoError(t, d.HandlerPublisher().Publish(out, o))
	msg.Ack()
	select {
	case reason := <-logs.dropped:
		require.Contains(t, reason, "taken over")
	case <-time.After(time.Minute):
		t.Fatal("the acknowledgement was not dropped within a minute")
	}

	var outputs, kept int
	require.NoError(t, db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM "watermill_`+out+`"`).Scan(&outputs))
	require.Zero(t, outputs, "the output of a hand-off whose acknowledgement failed was published")
	require.NoError(t, db.Pool.QueryRow(t.Context(),
		`SELECT count(*) FROM "watermill_`+in+`" WHERE lease_owner = 'another process'`).Scan(&kept))
	require.Equal(t, 1, kept, "the message taken over must stay with its new owner")
}

// dropLog is a quiet logger that reports the driver dropping an
// acknowledgement.
type dropLog struct {
	watermill.NopLogger
	dropped chan string
}

func (l *dropLog) Info(msg string, fields watermill.LogFields) {
	if msg == "pgdriver: acknowledgement dropped" {
		reason, _ := fields["reason"].(string)
		select {
		case l.dropped <- reason:
		default:
		}
	}
}

func (l *dropLog) With(watermill.LogFields) watermill.LoggerAdapter { return l }
