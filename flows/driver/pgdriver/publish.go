package pgdriver

import (
	"context"
	"errors"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
)

// publisher publishes to topic tables. Inside a delivery (a message being
// handled) the rows go into that delivery's transaction, inserted when the
// message is acknowledged, so a hand-off commits with its input's
// acknowledgement or not at all. Elsewhere each Publish is a transaction of
// its own, which does not wait for the disk: a request lost in a server
// crash is requested again by whoever waits for its result.
type publisher struct{ d *Driver }

// Publish inserts msgs into topic's table, in order.
func (p publisher) Publish(topic string, msgs ...*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	rows := make([]row, len(msgs))
	for i, m := range msgs {
		r, err := rowOf(m)
		if err != nil {
			return err
		}
		rows[i] = r
	}
	ctx := msgs[0].Context()
	if err := p.d.ensureTable(ctx, topic); err != nil {
		return err
	}
	if dl, ok := deliveryOf(ctx); ok {
		return dl.publish(topic, rows)
	}
	batch := &pgx.Batch{}
	out := p.d.queueOutputs(batch, []published{{topic: topic, rows: rows}}, sqlOwnTx)
	if err := sendOwnTx(ctx, p.d.pool, batch); err != nil {
		out.failed()
		return errors.Join(errPublish, err)
	}
	out.committed()
	return nil
}

var errPublish = errors.New("pgdriver: publish")

// Close does nothing: the publisher belongs to the driver.
func (publisher) Close() error { return nil }

// publishTx inserts msgs into topic's table inside tx (poison requeue); the
// caller wakes the topic's subscriptions after committing.
func publishTx(ctx context.Context, tx pgx.Tx, topic string, msgs ...*message.Message) error {
	rows := make([]row, len(msgs))
	for i, m := range msgs {
		r, err := rowOf(m)
		if err != nil {
			return err
		}
		rows[i] = r
	}
	q, args := insertSQL(topic, rows)
	_, err := tx.Exec(ctx, q, args...)
	return err
}
