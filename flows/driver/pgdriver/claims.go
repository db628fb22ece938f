package pgdriver

import (
	"sync"

	"github.com/jackc/pgx/v5"
)

// Claims ride along with commits. A claim in a transaction of its own costs
// a round trip and a commit per message, and an idle subscription would
// have to ask to learn that there is nothing. Instead:
//   - the commit that settles a delivery also claims its topic's next
//     message, which the same slot handles next (subscription.deliver);
//   - the commit that publishes a message claims it, or an earlier one of
//     its topic, for this process's subscription of that topic when it has
//     a free slot (outputs).
//
// Such a claim is the subscription's own claim statement, so it obeys the
// topic's order, and it commits or rolls back with the hand-off. A
// subscription's run loop claims only what these did not: after a wake
// that came with no claim, or when the fallback look (look.go) finds work.

// claimers are this process's subscriptions by topic.
type claimers struct {
	mu   sync.Mutex
	subs map[string][]*subscription
}

func (c *claimers) add(sub *subscription) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subs == nil {
		c.subs = map[string][]*subscription{}
	}
	c.subs[sub.topic] = append(c.subs[sub.topic], sub)
}

func (c *claimers) remove(sub *subscription) {
	c.mu.Lock()
	defer c.mu.Unlock()
	subs := c.subs[sub.topic]
	for i, s := range subs {
		if s == sub {
			c.subs[sub.topic] = append(subs[:i:i], subs[i+1:]...)
			return
		}
	}
}

// reserve returns a subscription of topic that took a free slot for a
// claim, or nil.
func (c *claimers) reserve(topic string) *subscription {
	c.mu.Lock()
	subs := append([]*subscription(nil), c.subs[topic]...)
	c.mu.Unlock()
	for _, s := range subs {
		if s.reserve() {
			return s
		}
	}
	return nil
}

// queuePublishedClaim adds to batch the claim a commit makes for sub after
// inserting rows into its topic. On a keyed topic, when the rows are of one
// race, it claims only that race's head, with one index probe: either one
// of the rows or an earlier message of the race, which, when leased, makes
// the claim find nothing, as the order demands. The topic-wide claim would
// walk every race with unhandled messages on every publish; the heads of
// other races are the run loop's to claim when woken.
func (sub *subscription) queuePublishedClaim(batch *pgx.Batch, rows []row) *claim {
	if sub.keyed && oneRace(rows) {
		return sub.queue(batch, sub.next, sub.owner, sub.s.d.cfg.Lease.Seconds(), rows[0].raceID)
	}
	return sub.queueClaim(batch)
}

// oneRace reports whether rows are all of one race.
func oneRace(rows []row) bool {
	if len(rows) == 0 {
		return false
	}
	for _, r := range rows[1:] {
		if r.raceID != rows[0].raceID {
			return false
		}
	}
	return true
}

// outputs are the messages one commit publishes and the claims it makes
// for this process's subscriptions of their topics.
type outputs struct {
	d      *Driver
	topics []string
	rows   [][]row
	claims []*claim // per topic; nil where no subscription had a free slot
}

// queueOutputs adds to batch the inserts of what a commit publishes and,
// after them, a claim per topic whose subscription here has a free slot.
// The first insert also applies settings, the transaction's (sqlOwnTx,
// genericPlans) for the statements after it, one statement fewer. Exactly
// one of committed and failed must follow.
func (d *Driver) queueOutputs(batch *pgx.Batch, pending []published, settings string) *outputs {
	o := &outputs{d: d}
	for i, p := range pending {
		q, args := insertSQL(p.topic, p.rows)
		if i == 0 && settings != "" {
			q = `WITH i AS (` + q + `) ` + settings
		}
		batch.Queue(q, args...)
		o.topics = append(o.topics, p.topic)
		o.rows = append(o.rows, p.rows)
	}
	for i, topic := range o.topics {
		var cl *claim
		if sub := d.claimers.reserve(topic); sub != nil {
			cl = sub.queuePublishedClaim(batch, o.rows[i])
		}
		o.claims = append(o.claims, cl)
	}
	return o
}

// committed hands the claimed messages to their subscriptions and tells
// the topics' other readers: this process's subscriptions are woken unless
// the claim took the one message published, other processes notified.
func (o *outputs) committed() {
	var wake []string
	for i, topic := range o.topics {
		cl := o.claims[i]
		if cl == nil {
			wake = append(wake, topic)
			continue
		}
		got := cl.result()
		cl.sub.handOver(got)
		if got == nil || len(o.rows[i]) != 1 || got.msg.UUID != o.rows[i][0].uuid {
			wake = append(wake, topic)
		}
	}
	o.d.wake(wake...)
	o.d.notify(o.topics...)
}

// failed gives the reserved slots back: nothing was published or claimed.
func (o *outputs) failed() {
	for _, cl := range o.claims {
		if cl != nil {
			cl.sub.handOver(nil)
		}
	}
}
