package flows

import (
	"context"
	"errors"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
)

// earlySubscriber subscribes to the results topics before the router starts
// any handler, and hands the router those subscriptions when it asks. The
// router starts its handlers in no set order, and where results fan out a
// subscription starts at new messages (NATS's ephemeral consumers): a poll
// already in the pipeline at start (a redelivery, a poll an earlier release
// left) could otherwise be processed before the results subscription
// existed, and its result would reach no instance.
type earlySubscriber struct {
	message.Subscriber

	mu    sync.Mutex
	early map[string]<-chan *message.Message
}

// subscribeEarly subscribes to every topic now.
func (s *earlySubscriber) subscribeEarly(ctx context.Context, topics []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.early = make(map[string]<-chan *message.Message, len(topics))
	for _, t := range topics {
		ch, err := s.Subscriber.Subscribe(ctx, t)
		if err != nil {
			return errors.Join(err, s.Subscriber.Close())
		}
		s.early[t] = ch
	}
	return nil
}

// Subscribe hands out the early subscription to topic, or subscribes now.
func (s *earlySubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	ch, ok := s.early[topic]
	delete(s.early, topic)
	s.mu.Unlock()
	if ok {
		return ch, nil
	}
	return s.Subscriber.Subscribe(ctx, topic)
}

// closeUnclaimed closes the subscriber if the router never asked for some
// early subscription (it failed to start): nothing else would end it.
func (s *earlySubscriber) closeUnclaimed() error {
	s.mu.Lock()
	unclaimed := len(s.early)
	s.mu.Unlock()
	if unclaimed == 0 {
		return nil
	}
	return s.Subscriber.Close()
}
