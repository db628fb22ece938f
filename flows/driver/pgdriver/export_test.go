package pgdriver

import "github.com/ThreeDotsLabs/watermill/message"

// WaitsForSlot reports whether the run loop of s's first subscription waits
// for a free slot, for tests of what a settling delivery claims then.
func WaitsForSlot(s message.Subscriber) bool {
	sub := s.(*subscriber)
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return len(sub.subs) > 0 && sub.subs[0].waiting.Load()
}
