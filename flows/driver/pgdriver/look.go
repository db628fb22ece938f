package pgdriver

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// looker is the fallback poll of this process's claiming subscriptions.
// Commits in this process and notifications from others wake them; what
// neither announced (a notification lost, a lease run out, a redelivery's
// wait over) is found here: every poll interval one statement asks which of
// their topics hold a message that is neither handled nor leased, and only
// those topics' subscriptions are woken to claim. An idle service thus
// sends one cheap statement per interval, not a claim per subscription.
type looker struct {
	d *Driver

	once sync.Once
	mu   sync.Mutex // guards stop and done against a close during start
	stop context.CancelFunc
	done chan struct{}
}

// start starts looking, once; the first subscription calls it.
func (l *looker) start() {
	l.once.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		l.mu.Lock()
		l.stop, l.done = cancel, make(chan struct{})
		l.mu.Unlock()
		go l.run(ctx)
	})
}

// close stops looking and waits for the look under way.
func (l *looker) close() {
	l.mu.Lock()
	stop, done := l.stop, l.done
	l.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// run looks at every poll interval until ctx ends.
func (l *looker) run(ctx context.Context) {
	defer close(l.done)
	failing := false
	for {
		timer := time.NewTimer(l.d.pollInterval())
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		topics := l.d.claimers.topics()
		if len(topics) == 0 {
			continue
		}
		found, err := l.look(ctx, topics)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// Let every subscription claim: a claim that meets the same
			// fault reports it where it is handled, and one that does not
			// still finds its work. Said once per failing spell.
			if !failing {
				l.d.logger.Error("pgdriver: look for unannounced work; every subscription claims instead", err, nil)
			}
			failing, found = true, topics
		} else {
			failing = false
		}
		for _, t := range found {
			l.d.waker.wake(t)
		}
	}
}

// look returns the topics that hold a message a claim could take.
func (l *looker) look(ctx context.Context, topics []string) ([]string, error) {
	rows, err := l.d.pool.Query(ctx, lookSQL(topics))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var i int
		if err := rows.Scan(&i); err != nil {
			return nil, err
		}
		found = append(found, topics[i])
	}
	return found, rows.Err()
}

// lookSQL asks, for each topic, whether its table holds a message that is
// not handled and not leased (through the partial index of unhandled
// messages), and returns the indexes of those that do.
func lookSQL(topics []string) string {
	var b strings.Builder
	for i, topic := range topics {
		if i > 0 {
			b.WriteString("\nUNION ALL ")
		}
		b.WriteString(`SELECT ` + strconv.Itoa(i) + ` WHERE EXISTS (SELECT 1 FROM ` + tableOf(topic) +
			` WHERE NOT acked AND (lease_until IS NULL OR lease_until <= now()))`)
	}
	return b.String()
}

// topics are the topics this process claims from, sorted, so that the look
// is one statement text while the subscriptions stay the same.
func (c *claimers) topics() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.subs))
	for t, subs := range c.subs {
		if len(subs) > 0 {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}
