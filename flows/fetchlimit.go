package flows

import (
	"context"

	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/stages/nztab"
)

// fetchLimit lets at most cap(slots) fetches run at once across every
// shard, so that a shard holding more of the races than the others may use
// what they leave of Config.FetchConcurrency.
type fetchLimit struct {
	next  handlers.Fetcher
	slots chan struct{}
}

func newFetchLimit(next handlers.Fetcher, n int) fetchLimit {
	return fetchLimit{next: next, slots: make(chan struct{}, n)}
}

// FetchEvent waits for a free slot (or the end of ctx) and fetches.
func (f fetchLimit) FetchEvent(ctx context.Context, raceID string) (*nztab.Fetched, error) {
	select {
	case f.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-f.slots }()
	return f.next.FetchEvent(ctx, raceID)
}
