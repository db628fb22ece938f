package flows_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/handlers"
	corpus "github.com/raceflow/raceflow/internal/hostile"
	"github.com/raceflow/raceflow/internal/nztabsim"
)

// caseBound is how long one hostile poll may take to end, on a machine as
// busy as CI's: the cases end within seconds (the client's budget under
// corpus.ShortTimeouts is 10 s); a poll that has not ended by then is stuck.
const caseBound = 30 * time.Second

// TestEveryHostileAnswerEndsInBoundedTimeWhileItsShardFlows polls, on every
// backend, a race answered by each case of the hostile-input corpus, and a
// healthy race of the same shard beside it. Each hostile poll ends as its
// case says (success, skipped, or poisoned once) within caseBound, a failed
// one leaves nothing written, and the healthy race is written all the same.
func TestEveryHostileAnswerEndsInBoundedTimeWhileItsShardFlows(t *testing.T) {
	t.Parallel()
	cases, err := corpus.Cases()
	require.NoError(t, err)
	onEach(t, backends, func(t *testing.T, backend string) {
		var api *corpus.Handler
		h := newHarness(t, withAPI(func(next http.Handler) http.Handler {
			api = corpus.NewHandler(next.(*nztabsim.Sim)) // the harness's simulator
			return api.Wrap(next)
		}), withClient(corpus.ShortTimeouts))
		cfg := cfgFor(t, backend)
		e, _ := h.start(t, cfg)
		race, err := corpus.PickRace(h.sim)
		require.NoError(t, err)
		var neighbours []string
		for _, r := range h.races {
			if r.ID != race && driver.Shard(r.ID, cfg.Shards) == driver.Shard(race, cfg.Shards) {
				neighbours = append(neighbours, r.ID)
			}
		}
		require.NotEmpty(t, neighbours, "a healthy race on the hostile race's shard")

		for i, c := range cases {
			polled := c.RaceID(race)
			require.NoError(t, api.Serve(race, c), c.Name)
			ctx, cancel := context.WithTimeout(context.Background(), caseBound)
			var wg sync.WaitGroup
			var healthy handlers.ProcessResult
			var healthyErr error
			wg.Add(1)
			go func() {
				defer wg.Done()
				hctx, hcancel := context.WithTimeout(context.Background(), time.Minute)
				defer hcancel()
				healthy, healthyErr = e.ProcessRace(hctx, neighbours[i%len(neighbours)])
			}()
			res, err := e.ProcessRace(ctx, polled)
			cancel()
			wg.Wait()
			api.Stop(race)
			require.False(t, errors.Is(err, context.DeadlineExceeded), "%s: the poll did not end within %s", c.Name, caseBound)
			require.NoError(t, healthyErr, "%s: the healthy race beside it", c.Name)
			require.Equal(t, handlers.StatusSuccess, healthy.Status, c.Name)

			if c.PollID != "" {
				// A race id no API id can be is refused before it enters the
				// flow: failed, a validation error, nothing published, nothing
				// poisoned, no request.
				var fe *handlers.FetchError
				require.ErrorAs(t, err, &fe, c.Name)
				require.Equal(t, handlers.StatusFailed, res.Status, c.Name)
				require.Equal(t, "validation", res.Error.Kind, c.Name)
				require.Zero(t, api.Requests(c.PollID), "%s: a hostile id never reaches the API", c.Name)
				if msgs, ok := poisonQueue(t, cfg, h.db.Pool, driver.PoisonFilter{RaceID: polled}); ok {
					require.Empty(t, msgs, c.Name)
				}
				continue
			}
			switch c.Want.Outcome {
			case corpus.OutcomeSuccess:
				require.NoError(t, err, c.Name)
				require.Equal(t, handlers.StatusSuccess, res.Status, c.Name)
				require.Equal(t, 1, h.count(t, `SELECT count(*) FROM race_polls WHERE poll_id = $1`, res.PollID), c.Name)
				continue
			case corpus.OutcomeSkipped:
				require.Equal(t, handlers.StatusSkipped, res.Status, "%s: %v", c.Name, err)
			case corpus.OutcomePoisoned:
				require.Equal(t, handlers.StatusFailed, res.Status, "%s: %v", c.Name, err)
			}
			require.NotNil(t, res.Error, c.Name)
			require.Equal(t, c.Want.Stage, res.Error.Stage, "%s: %s", c.Name, res.Error.Message)
			require.Equal(t, c.Want.Kind, res.Error.Kind, "%s: %s", c.Name, res.Error.Message)
			require.Zero(t, h.count(t, `SELECT count(*) FROM race_polls WHERE poll_id = $1`, res.PollID), "%s wrote nothing", c.Name)
			want := 0
			if c.Want.Outcome == corpus.OutcomePoisoned {
				want = 1
			}
			// Earlier cases poisoned polls of the same race, so count this
			// poll's messages: the poison may be published after the result.
			if n, ok := pollPoisoned(t, cfg, h.db.Pool, polled, res.PollID, want); ok {
				require.Equal(t, want, n, "%s: poisoned %d times", c.Name, n)
			}
		}
	})
}

// pollPoisoned waits until race's poison queue holds at least want messages
// of pollID (30 s at most) and returns how many it holds; ok is false on a
// backend with no stored queue.
func pollPoisoned(t *testing.T, cfg flows.Config, pool *pgxpool.Pool, race, pollID string, want int) (n int, ok bool) {
	t.Helper()
	require.Eventually(t, func() bool {
		var msgs []driver.PoisonMessage
		msgs, ok = poisonQueue(t, cfg, pool, driver.PoisonFilter{RaceID: race})
		n = 0
		for _, m := range msgs {
			if m.PollID == pollID {
				n++
			}
		}
		return !ok || n >= want
	}, 30*time.Second, 20*time.Millisecond, "%d poison messages of poll %s", want, pollID)
	return n, ok
}
