package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/stages/nzday"
)

// RacePage is the data of "/races/{id}".
type RacePage struct {
	GeneratedAt time.Time     `json:"generated_at"`
	Race        RaceInfo      `json:"race"`
	Schedule    *RaceSchedule `json:"schedule,omitempty"` // nil: not tracked by this process
	Runners     []Runner      `json:"runners"`
	Pools       *Pools        `json:"pools,omitempty"`
	// Hold is the hold % of every runner at each charted poll, oldest first.
	Hold []HoldPoll `json:"hold"`
	// Increments are the incremental win amounts of every runner per
	// timing bucket, earliest bucket first.
	Increments []BucketIncrement `json:"increments"`
	Results    *Results          `json:"results,omitempty"`
	// Alerts are the race's alerts, oldest first.
	Alerts []Alert `json:"alerts"`
	// Polls are this process's latest results for the race, newest first.
	Polls []PollRecord `json:"polls"`
	// Stored are the latest polls written to the database, newest first.
	Stored   []StoredPoll `json:"stored"`
	Poisoned int          `json:"poisoned"`
	Warnings []string     `json:"warnings"`
}

// RaceSchedule is how the scheduler polls the race.
type RaceSchedule struct {
	CadenceS    float64    `json:"cadence_s"`
	Polls       int        `json:"polls"`
	LastRequest *time.Time `json:"last_request,omitempty"`
	NextPoll    *time.Time `json:"next_poll,omitempty"` // nil while a poll is in flight
	InFlight    bool       `json:"in_flight"`
	Lost        bool       `json:"lost"`
}

// RaceInfo describes the race.
type RaceInfo struct {
	ID             string     `json:"id"`
	Number         int        `json:"number"`
	Name           string     `json:"name"`
	Status         string     `json:"status"`
	Start          time.Time  `json:"start"`
	StartNZ        string     `json:"start_nz"`
	UntilStartS    float64    `json:"until_start_s"`
	ActualStart    *time.Time `json:"actual_start,omitempty"`
	Distance       *int       `json:"distance,omitempty"`
	TrackCondition *string    `json:"track_condition,omitempty"`
	Weather        *string    `json:"weather,omitempty"`
	MeetingID      string     `json:"meeting_id"`
	MeetingName    string     `json:"meeting_name"`
	Country        string     `json:"country"`
	RaceType       string     `json:"race_type"`
}

// Runner is one entrant with its current odds and money.
type Runner struct {
	EntrantID  string   `json:"entrant_id"`
	Number     int      `json:"number"`
	Name       string   `json:"name"`
	Barrier    *int     `json:"barrier,omitempty"`
	Jockey     *string  `json:"jockey,omitempty"`
	Scratched  bool     `json:"scratched"`
	FixedWin   *float64 `json:"fixed_win,omitempty"`
	FixedPlace *float64 `json:"fixed_place,omitempty"`
	PoolWin    *float64 `json:"pool_win,omitempty"`
	PoolPlace  *float64 `json:"pool_place,omitempty"`
	HoldPct    *float64 `json:"hold_pct,omitempty"`
	// WinSharePct and PlaceSharePct are the runner's shares of the pools.
	WinSharePct   *float64 `json:"win_share_pct,omitempty"`
	PlaceSharePct *float64 `json:"place_share_pct,omitempty"`
	// WinCents and PlaceCents are the runner's money in the pools.
	WinCents   *int64 `json:"win_cents,omitempty"`
	PlaceCents *int64 `json:"place_cents,omitempty"`
}

// Pools are the race's pool totals in cents.
type Pools struct {
	Win       int64     `json:"win"`
	Place     int64     `json:"place"`
	Quinella  int64     `json:"quinella"`
	Trifecta  int64     `json:"trifecta"`
	Exacta    int64     `json:"exacta"`
	First4    int64     `json:"first4"`
	Total     int64     `json:"total"`
	Currency  string    `json:"currency"`
	Quality   int       `json:"quality"`
	UpdatedAt time.Time `json:"updated_at"`
}

// HoldPoll is one poll on the hold chart. Hold lists the hold % in the order
// of RacePage.Runners (null where the poll has no row for the runner).
type HoldPoll struct {
	At             time.Time  `json:"at"`
	MinutesToStart float64    `json:"minutes_to_start"`
	Bucket         int        `json:"bucket"`
	Hold           []*float64 `json:"hold"`
}

// BucketIncrement is the win money each runner took within one timing
// bucket (60 … 5, 4 … 0, then after the start), in the order of
// RacePage.Runners, in cents.
type BucketIncrement struct {
	Bucket int     `json:"bucket"`
	Polls  int     `json:"polls"`
	Win    []int64 `json:"win"`
}

// Results are the race's placings and dividends once known.
type Results struct {
	Status          string     `json:"status"` // interim, final, protest
	Placings        []Placing  `json:"placings"`
	Dividends       []Dividend `json:"dividends"`
	PhotoFinish     bool       `json:"photo_finish"`
	StewardsInquiry bool       `json:"stewards_inquiry"`
	ProtestLodged   bool       `json:"protest_lodged"`
}

// Placing is one runner's result.
type Placing struct {
	Position     int    `json:"position"`
	RunnerNumber int    `json:"runner_number"`
	Name         string `json:"name"`
	Margin       string `json:"margin,omitempty"`
}

// Dividend is one product's dividend, in dollars as the API gives them.
type Dividend struct {
	Product   string  `json:"product"`
	Status    string  `json:"status"`
	Dividend  float64 `json:"dividend"`
	PoolSize  float64 `json:"pool_size"`
	Positions []int   `json:"runners"`
}

// StoredPoll is one row of the race_polls ledger.
type StoredPoll struct {
	ObservedAt   time.Time `json:"observed_at"`
	PollID       string    `json:"poll_id"`
	RaceStatus   string    `json:"race_status"`
	QualityScore int       `json:"quality_score"`
	WrittenAt    time.Time `json:"written_at"`
}

const sqlRace = `
SELECT r.race_id, r.race_number, r.name, r.status, r.start_time, r.actual_start, r.distance, r.track_condition,
       r.weather, m.meeting_id, m.meeting_name, m.country, m.race_type
FROM races r JOIN meetings m ON m.meeting_id = r.meeting_id
WHERE r.race_id = $1`

const sqlRunners = `
SELECT entrant_id, runner_number, name, barrier, jockey, is_scratched OR is_late_scratched,
       fixed_win_odds::float8, fixed_place_odds::float8, pool_win_odds::float8, pool_place_odds::float8,
       hold_percentage::float8, win_pool_percentage::float8, place_pool_percentage::float8,
       win_pool_amount, place_pool_amount
FROM entrants WHERE race_id = $1
ORDER BY runner_number, entrant_id`

const sqlPools = `
SELECT win_pool_total, place_pool_total, quinella_pool_total, trifecta_pool_total, exacta_pool_total,
       first4_pool_total, total_race_pool, currency, data_quality_score, updated_at
FROM race_pools WHERE race_id = $1`

const sqlResults = `
SELECT result_status, results_data, dividends_data, photo_finish, stewards_inquiry, protest_lodged
FROM race_results WHERE race_id = $1 AND results_available`

// sqlStoredPolls reads the newest polls backwards along race_polls' key.
const sqlStoredPolls = `
SELECT observed_at, poll_id, status, quality_score, written_at
FROM race_polls WHERE race_id = $1
ORDER BY observed_at DESC LIMIT $2`

// sqlPollRange bounds the race's history reads: its first and last stored
// polls, and where the hold chart starts (the last hour before the start,
// or further back to take in the latest $3 polls). History rows carry their
// poll's instant as the partition key, so reads within these bounds touch
// only the daily partitions that hold the race. Each figure is a probe of
// race_polls' key.
const sqlPollRange = `
SELECT min(observed_at), max(observed_at),
       least($2::timestamptz, (SELECT min(observed_at) FROM (
           SELECT observed_at FROM race_polls WHERE race_id = $1 ORDER BY observed_at DESC LIMIT $3) p))
FROM race_polls WHERE race_id = $1`

// sqlHold reads the runners' hold % at the polls from $3 to $4. The runner
// ids make every probe of money_flow_history_key an exact (race, runner,
// time range) walk.
const sqlHold = `
SELECT entrant_id, polling_timestamp, time_interval, hold_percentage::float8
FROM money_flow_history
WHERE race_id = $1 AND entrant_id = ANY ($2::text[])
  AND polling_timestamp >= $3 AND event_timestamp >= $3 AND event_timestamp <= $4
ORDER BY polling_timestamp, entrant_id`

// sqlIncrements sums each runner's increments per bucket. Increments are
// against the previous poll, so their sum over a bucket is the money the
// runner took within it (the first bucket's sum is all the money before it).
const sqlIncrements = `
SELECT entrant_id, time_interval, sum(incremental_win_amount)::bigint, count(*)
FROM money_flow_history
WHERE race_id = $1 AND entrant_id = ANY ($2::text[]) AND event_timestamp >= $3 AND event_timestamp <= $4
GROUP BY entrant_id, time_interval`

// Race returns the data of "/races/{id}": ErrMalformedID for an id of the
// wrong shape, ErrRaceNotFound for an unknown one.
func (m *Model) Race(ctx context.Context, id string) (RacePage, error) {
	if !ValidRaceID(id) {
		return RacePage{}, fmt.Errorf("%w: race id %q", ErrMalformedID, truncate(id, 40))
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.QueryTimeout)
	defer cancel()
	now := m.cfg.Now()
	page := RacePage{GeneratedAt: now, Runners: []Runner{}, Hold: []HoldPoll{}, Increments: []BucketIncrement{},
		Alerts: []Alert{}, Stored: []StoredPoll{}, Warnings: []string{}}

	ri := &page.Race
	err := m.deps.DB.QueryRow(ctx, sqlRace, id).Scan(&ri.ID, &ri.Number, &ri.Name, &ri.Status, &ri.Start,
		&ri.ActualStart, &ri.Distance, &ri.TrackCondition, &ri.Weather, &ri.MeetingID, &ri.MeetingName, &ri.Country,
		&ri.RaceType)
	if errors.Is(err, pgx.ErrNoRows) {
		return RacePage{}, fmt.Errorf("%w: %s", ErrRaceNotFound, id)
	}
	if err != nil {
		return RacePage{}, unavailable("race", err)
	}
	ri.StartNZ = ri.Start.In(nzday.Location()).Format("15:04")
	ri.UntilStartS = seconds(ri.Start.Sub(now))

	if err := m.readRunners(ctx, &page); err != nil {
		return RacePage{}, err
	}
	if err := m.readPoolsAndResults(ctx, &page); err != nil {
		return RacePage{}, err
	}
	if err := m.readCharts(ctx, &page); err != nil {
		return RacePage{}, err
	}
	if page.Alerts, err = m.readAlerts(ctx, sqlRaceAlerts, id); err != nil {
		return RacePage{}, unavailable("alerts", err)
	}
	rows, err := m.deps.DB.Query(ctx, sqlStoredPolls, id, m.cfg.StoredPolls)
	if err == nil {
		page.Stored, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (StoredPoll, error) {
			var p StoredPoll
			err := row.Scan(&p.ObservedAt, &p.PollID, &p.RaceStatus, &p.QualityScore, &p.WrittenAt)
			return p, err
		})
	}
	if err != nil {
		return RacePage{}, unavailable("stored polls", err)
	}

	page.Polls = m.deps.Recorder.Polls(id)
	if page.Polls == nil {
		page.Polls = []PollRecord{}
	}
	if m.deps.Schedule != nil {
		list, err := m.deps.Schedule.Tracked(ctx)
		if err != nil {
			page.Warnings = append(page.Warnings, "scheduler: "+err.Error())
		}
		for _, tr := range list {
			if tr.RaceID == id {
				page.Schedule = &RaceSchedule{CadenceS: seconds(tr.Cadence), Polls: tr.Polls, InFlight: tr.InFlight, Lost: tr.Lost}
				if !tr.LastRequest.IsZero() {
					page.Schedule.LastRequest = &tr.LastRequest
				}
				if !tr.NextPoll.IsZero() {
					page.Schedule.NextPoll = &tr.NextPoll
				}
				break
			}
		}
	}
	if m.deps.Poison != nil {
		st, err := m.deps.Poison.PoisonStats(ctx)
		if err != nil {
			page.Warnings = append(page.Warnings, "poison queue: "+err.Error())
		}
		page.Poisoned = st.ByRace[id]
	}
	return page, nil
}

func (m *Model) readRunners(ctx context.Context, page *RacePage) error {
	rows, err := m.deps.DB.Query(ctx, sqlRunners, page.Race.ID)
	if err != nil {
		return unavailable("runners", err)
	}
	page.Runners, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Runner, error) {
		var r Runner
		err := row.Scan(&r.EntrantID, &r.Number, &r.Name, &r.Barrier, &r.Jockey, &r.Scratched, &r.FixedWin,
			&r.FixedPlace, &r.PoolWin, &r.PoolPlace, &r.HoldPct, &r.WinSharePct, &r.PlaceSharePct, &r.WinCents,
			&r.PlaceCents)
		return r, err
	})
	if err != nil {
		return unavailable("runners", err)
	}
	return nil
}

func (m *Model) readPoolsAndResults(ctx context.Context, page *RacePage) error {
	var p Pools
	err := m.deps.DB.QueryRow(ctx, sqlPools, page.Race.ID).Scan(&p.Win, &p.Place, &p.Quinella, &p.Trifecta,
		&p.Exacta, &p.First4, &p.Total, &p.Currency, &p.Quality, &p.UpdatedAt)
	switch {
	case err == nil:
		page.Pools = &p
	case !errors.Is(err, pgx.ErrNoRows):
		return unavailable("pools", err)
	}

	var res Results
	var status *string
	var placings, dividends []byte
	err = m.deps.DB.QueryRow(ctx, sqlResults, page.Race.ID).Scan(&status, &placings, &dividends, &res.PhotoFinish,
		&res.StewardsInquiry, &res.ProtestLodged)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return unavailable("results", err)
	}
	if status != nil {
		res.Status = *status
	}
	res.Placings, res.Dividends = []Placing{}, []Dividend{}
	if err := decodeResults(placings, dividends, &res); err != nil {
		page.Warnings = append(page.Warnings, err.Error())
	}
	page.Results = &res
	return nil
}

// decodeResults reads the stored results and dividends (the API's shapes).
func decodeResults(placings, dividends []byte, res *Results) error {
	var ps []struct {
		Position         int      `json:"position"`
		RunnerNumber     int      `json:"runner_number"`
		Name             string   `json:"name"`
		PositionalMargin string   `json:"positional_margin"`
		MarginLength     *float64 `json:"margin_length"`
	}
	var ds []struct {
		ProductName string  `json:"product_name"`
		Status      string  `json:"status"`
		Dividend    float64 `json:"dividend"`
		PoolSize    float64 `json:"pool_size"`
		Positions   []struct {
			RunnerNumber int `json:"runner_number"`
		} `json:"positions"`
	}
	if len(placings) > 0 {
		if err := json.Unmarshal(placings, &ps); err != nil {
			return fmt.Errorf("status: stored results: %w", err)
		}
	}
	if len(dividends) > 0 {
		if err := json.Unmarshal(dividends, &ds); err != nil {
			return fmt.Errorf("status: stored dividends: %w", err)
		}
	}
	for _, p := range ps {
		res.Placings = append(res.Placings, Placing{Position: p.Position, RunnerNumber: p.RunnerNumber, Name: p.Name,
			Margin: p.PositionalMargin})
	}
	for _, d := range ds {
		dv := Dividend{Product: d.ProductName, Status: d.Status, Dividend: d.Dividend, PoolSize: d.PoolSize, Positions: []int{}}
		for _, pos := range d.Positions {
			dv.Positions = append(dv.Positions, pos.RunnerNumber)
		}
		res.Dividends = append(res.Dividends, dv)
	}
	return nil
}

func (m *Model) readCharts(ctx context.Context, page *RacePage) error {
	if len(page.Runners) == 0 {
		return nil
	}
	id, start := page.Race.ID, page.Race.Start
	ids := make([]string, len(page.Runners))
	index := make(map[string]int, len(page.Runners))
	for i, r := range page.Runners {
		ids[i], index[r.EntrantID] = r.EntrantID, i
	}
	var first, last, from *time.Time
	if err := m.deps.DB.QueryRow(ctx, sqlPollRange, id, start.Add(-time.Hour), m.cfg.ChartPolls).Scan(&first, &last, &from); err != nil {
		return unavailable("poll range", err)
	}
	if first == nil {
		return nil // never polled: no history
	}
	lo, hi := *first, *last
	rows, err := m.deps.DB.Query(ctx, sqlHold, id, ids, *from, hi)
	if err != nil {
		return unavailable("hold history", err)
	}
	var cur *HoldPoll
	var entrant string
	var at time.Time
	var bucket int
	var hold float64
	_, err = pgx.ForEachRow(rows, []any{&entrant, &at, &bucket, &hold}, func() error {
		if cur == nil || !cur.At.Equal(at) {
			page.Hold = append(page.Hold, HoldPoll{At: at, MinutesToStart: start.Sub(at).Minutes(), Bucket: bucket,
				Hold: make([]*float64, len(ids))})
			cur = &page.Hold[len(page.Hold)-1]
		}
		h := hold
		cur.Hold[index[entrant]] = &h
		return nil
	})
	if err != nil {
		return unavailable("hold history", err)
	}

	rows, err = m.deps.DB.Query(ctx, sqlIncrements, id, ids, lo, hi)
	if err != nil {
		return unavailable("increments", err)
	}
	byBucket := map[int]*BucketIncrement{}
	var sum int64
	var n int
	_, err = pgx.ForEachRow(rows, []any{&entrant, &bucket, &sum, &n}, func() error {
		b := byBucket[bucket]
		if b == nil {
			b = &BucketIncrement{Bucket: bucket, Win: make([]int64, len(ids))}
			byBucket[bucket] = b
		}
		b.Win[index[entrant]] = sum
		b.Polls = max(b.Polls, n)
		return nil
	})
	if err != nil {
		return unavailable("increments", err)
	}
	for _, b := range byBucket {
		page.Increments = append(page.Increments, *b)
	}
	// Earliest bucket first: buckets count down to the start and below.
	sort.Slice(page.Increments, func(i, j int) bool { return page.Increments[i].Bucket > page.Increments[j].Bucket })
	return nil
}
