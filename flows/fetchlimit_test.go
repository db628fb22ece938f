package flows_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/stages/nztab"
)

// gatedFetcher holds every fetch until released and records how many ran
// at once.
type gatedFetcher struct {
	next    handlers.Fetcher
	entered chan struct{}
	release chan struct{}

	mu          sync.Mutex
	now, most   int
	concurrentR map[string]int
	sameRace    bool
}

func (g *gatedFetcher) FetchEvent(ctx context.Context, raceID string) (*nztab.Fetched, error) {
	g.mu.Lock()
	g.now++
	g.most = max(g.most, g.now)
	g.concurrentR[raceID]++
	if g.concurrentR[raceID] > 1 {
		g.sameRace = true
	}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.now--
		g.concurrentR[raceID]--
		g.mu.Unlock()
	}()
	select {
	case g.entered <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.next.FetchEvent(ctx, raceID)
}

func TestFetchesAtOnceAreOneBudgetSharedByTheShards(t *testing.T) {
	onEach(t, []string{config.BackendPostgres, config.BackendMemory}, func(t *testing.T, backend string) {
		h := newHarness(t)
		cfg := cfgFor(t, backend)
		cfg.Shards, cfg.FetchConcurrency = 4, 6
		// Every race of shard 0: a quarter of the budget per shard would
		// let only 2 of them fetch at once.
		var ids []string
		for _, r := range h.races {
			if driver.Shard(r.ID, cfg.Shards) == 0 {
				ids = append(ids, r.ID)
			}
		}
		require.GreaterOrEqual(t, len(ids), 10, "the simulator's day has enough races on shard 0")
		ids = ids[:10]
		g := &gatedFetcher{next: h.client, entered: make(chan struct{}, len(ids)), release: make(chan struct{}),
			concurrentR: map[string]int{}}
		e, _ := h.startWith(t, cfg, flows.Deps{Fetcher: g})

		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		done := make(chan error, 1)
		var results []handlers.ProcessResult
		go func() {
			var err error
			results, err = e.ProcessRaces(ctx, ids, len(ids))
			done <- err
		}()
		for range cfg.FetchConcurrency {
			select {
			case <-g.entered:
			case <-ctx.Done():
				t.Fatalf("fewer than %d fetches of one shard started at once", cfg.FetchConcurrency)
			}
		}
		close(g.release) // every fetch, held or still to come, goes through now
		// Take the later fetches' entries, which the test does not wait for,
		// until the batch is done.
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			for {
				select {
				case <-g.entered:
				case <-ctx.Done():
					return
				}
			}
		}()
		err := <-done
		cancel()
		<-drained
		require.NoError(t, err)
		require.Len(t, results, len(ids))
		for _, r := range results {
			require.Equal(t, handlers.StatusSuccess, r.Status, "race %s: %+v", r.RaceID, r.Error)
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		require.Equal(t, cfg.FetchConcurrency, g.most, "at most the budget at once, and all of it for one shard")
		require.False(t, g.sameRace, "never two fetches of one race at once")
	})
}
