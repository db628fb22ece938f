package transform

import (
	"encoding/json"
	"time"
)

// RaceSnapshot is everything one poll of one race says, shaped for the
// database: field names are column names and money is integer cents. A nil
// pointer means "the payload did not say", which the write stage must never
// store over a known value.
type RaceSnapshot struct {
	RaceID string `json:"race_id"`
	// ObservedAt is when the fetch happened; it is the polling and event
	// timestamp of every history row of this poll.
	ObservedAt time.Time    `json:"observed_at"`
	Meeting    *Meeting     `json:"meeting,omitempty"`
	Race       Race         `json:"race"`
	Entrants   []Entrant    `json:"entrants"`
	RacePools  *RacePools   `json:"race_pools,omitempty"`
	MoneyFlow  []MoneyFlow  `json:"money_flow"`
	Odds       []Odds       `json:"odds"`
	Results    *RaceResults `json:"results,omitempty"`
	Quality    Quality      `json:"quality"`
}

// Meeting is a meetings row as the event payload describes it.
type Meeting struct {
	MeetingID      string  `json:"meeting_id"`
	MeetingName    string  `json:"meeting_name"`
	Country        string  `json:"country"`
	State          *string `json:"state,omitempty"`
	RaceType       string  `json:"race_type"` // thoroughbred | harness | greyhound
	Category       string  `json:"category"`  // T | H | G
	Date           string  `json:"date"`      // NZ racing day, YYYY-MM-DD
	TrackCondition *string `json:"track_condition,omitempty"`
	ToteStatus     *string `json:"tote_status,omitempty"`
}

// Race is a races row.
type Race struct {
	RaceID          string          `json:"race_id"`
	MeetingID       string          `json:"meeting_id"`
	Name            string          `json:"name"`
	RaceNumber      int             `json:"race_number"`
	StartTime       time.Time       `json:"start_time"` // from advertised_start
	Status          string          `json:"status"`     // open|closed|interim|final|abandoned
	ActualStart     *time.Time      `json:"actual_start,omitempty"`
	RaceDateNZ      *string         `json:"race_date_nz,omitempty"`  // YYYY-MM-DD
	StartTimeNZ     *string         `json:"start_time_nz,omitempty"` // as the API gives it, e.g. "12:50:00 NZST"
	Distance        *int            `json:"distance,omitempty"`
	TrackCondition  *string         `json:"track_condition,omitempty"`
	TrackSurface    *string         `json:"track_surface,omitempty"`
	TrackDirection  *string         `json:"track_direction,omitempty"`
	RailPosition    *string         `json:"rail_position,omitempty"`
	Weather         *string         `json:"weather,omitempty"`
	Type            *string         `json:"type,omitempty"`              // T | H | G
	TotalPrizeMoney *int64          `json:"total_prize_money,omitempty"` // cents
	EntrantCount    *int            `json:"entrant_count,omitempty"`
	FieldSize       *int            `json:"field_size,omitempty"`
	PositionsPaid   *int            `json:"positions_paid,omitempty"`
	SilkURL         *string         `json:"silk_url,omitempty"`
	SilkBaseURL     *string         `json:"silk_base_url,omitempty"`
	VideoChannels   json.RawMessage `json:"video_channels,omitempty"` // JSON array
	APIGeneratedAt  *time.Time      `json:"api_generated_at,omitempty"`
}

// Entrant is an entrants row. Money-tracker fields are nil when this poll
// carried no money data for the runner.
type Entrant struct {
	EntrantID           string          `json:"entrant_id"`
	RaceID              string          `json:"race_id"`
	Name                string          `json:"name"`
	RunnerNumber        int             `json:"runner_number"`
	Barrier             *int            `json:"barrier,omitempty"`
	IsScratched         bool            `json:"is_scratched"`
	IsLateScratched     bool            `json:"is_late_scratched"`
	IsEmergency         bool            `json:"is_emergency"`
	ScratchTime         *time.Time      `json:"scratch_time,omitempty"`
	FixedWinOdds        *float64        `json:"fixed_win_odds,omitempty"`
	FixedPlaceOdds      *float64        `json:"fixed_place_odds,omitempty"`
	PoolWinOdds         *float64        `json:"pool_win_odds,omitempty"`
	PoolPlaceOdds       *float64        `json:"pool_place_odds,omitempty"`
	HoldPercentage      *float64        `json:"hold_percentage,omitempty"`
	BetPercentage       *float64        `json:"bet_percentage,omitempty"`
	WinPoolPercentage   *float64        `json:"win_pool_percentage,omitempty"`
	PlacePoolPercentage *float64        `json:"place_pool_percentage,omitempty"`
	WinPoolAmount       *int64          `json:"win_pool_amount,omitempty"`   // cents
	PlacePoolAmount     *int64          `json:"place_pool_amount,omitempty"` // cents
	Jockey              *string         `json:"jockey,omitempty"`
	TrainerName         *string         `json:"trainer_name,omitempty"`
	SilkColours         *string         `json:"silk_colours,omitempty"`
	SilkURL64           *string         `json:"silk_url_64x64,omitempty"`
	SilkURL128          *string         `json:"silk_url_128x128,omitempty"`
	Favourite           bool            `json:"favourite"`
	Mover               bool            `json:"mover"`
	RunnerChange        json.RawMessage `json:"runner_change,omitempty"` // JSON object
}

// RacePools is the race_pools row; totals in cents.
type RacePools struct {
	RaceID            string `json:"race_id"`
	WinPoolTotal      int64  `json:"win_pool_total"`
	PlacePoolTotal    int64  `json:"place_pool_total"`
	QuinellaPoolTotal int64  `json:"quinella_pool_total"`
	TrifectaPoolTotal int64  `json:"trifecta_pool_total"`
	ExactaPoolTotal   int64  `json:"exacta_pool_total"`
	First4PoolTotal   int64  `json:"first4_pool_total"`
	// TotalRacePool includes every pool the API reported, known type or not.
	TotalRacePool    int64  `json:"total_race_pool"`
	Currency         string `json:"currency"`
	DataQualityScore int    `json:"data_quality_score"`
	ExtractedPools   int    `json:"extracted_pools"`
	Source           string `json:"source"` // tote_pools | dividends
}

// MoneyFlow is one money_flow_history row of this poll. Incremental amounts
// are not here: the write stage derives them from stored history.
type MoneyFlow struct {
	RaceID              string    `json:"race_id"`
	EntrantID           string    `json:"entrant_id"`
	PollingTimestamp    time.Time `json:"polling_timestamp"`
	EventTimestamp      time.Time `json:"event_timestamp"`
	TimeToStart         int       `json:"time_to_start"`
	TimeInterval        int       `json:"time_interval"`
	IntervalType        string    `json:"interval_type"` // 5m | 2m | 30s | live
	HoldPercentage      float64   `json:"hold_percentage"`
	BetPercentage       float64   `json:"bet_percentage"`
	WinPoolPercentage   *float64  `json:"win_pool_percentage,omitempty"`
	PlacePoolPercentage *float64  `json:"place_pool_percentage,omitempty"`
	WinPoolAmount       int64     `json:"win_pool_amount"`   // cents
	PlacePoolAmount     int64     `json:"place_pool_amount"` // cents
	TotalPoolAmount     int64     `json:"total_pool_amount"` // cents
}

// Odds is one candidate odds_history row; the write stage keeps it only when
// it changed by more than 0.01 from the latest earlier row.
type Odds struct {
	RaceID         string    `json:"race_id"`
	EntrantID      string    `json:"entrant_id"`
	Type           string    `json:"type"` // fixed_win | fixed_place | pool_win | pool_place
	Odds           float64   `json:"odds"`
	EventTimestamp time.Time `json:"event_timestamp"`
}

// RaceResults is the race_results row, present once results exist.
type RaceResults struct {
	RaceID           string          `json:"race_id"`
	ResultsAvailable bool            `json:"results_available"`
	ResultsData      json.RawMessage `json:"results_data"`
	DividendsData    json.RawMessage `json:"dividends_data"`
	FixedOddsData    json.RawMessage `json:"fixed_odds_data"`
	ResultStatus     string          `json:"result_status"` // interim | final | protest
	PhotoFinish      bool            `json:"photo_finish"`
	StewardsInquiry  bool            `json:"stewards_inquiry"`
	ProtestLodged    bool            `json:"protest_lodged"`
	ResultTime       time.Time       `json:"result_time"`
}

// Quality is the poll's data-quality report (docs/DOMAIN.md §2.8, ±5 %
// tolerance). It never blocks the write, with one exception the transform
// applies itself: money that cannot be true is withheld (MoneyWithheld).
type Quality struct {
	Score    int      `json:"score"`
	Valid    bool     `json:"valid"`
	Warnings []string `json:"warnings,omitempty"`
	// MoneyWithheld, when set, says why this poll's money-tracker data was
	// impossible and so produced no money-flow rows and no entrant money
	// fields; Valid is then false.
	MoneyWithheld string `json:"money_withheld,omitempty"`
	// ReplacedChars counts NUL characters and invalid UTF-8 sequences the
	// decoder replaced with U+FFFD (the database cannot store them).
	ReplacedChars int `json:"replaced_chars,omitempty"`
	// UnknownHoldPercentage is the hold on money-tracker ids that are not
	// runners; it counts towards the 100 % of the percentage checks.
	UnknownHoldPercentage float64 `json:"unknown_hold_percentage,omitempty"`
	// UnknownMoneyTrackerIDs counts money-tracker entrant ids that are not
	// runners of the race; their rows are skipped.
	UnknownMoneyTrackerIDs int     `json:"unknown_money_tracker_ids"`
	UnknownPoolTypes       int     `json:"unknown_pool_types"`
	HoldPercentageSum      float64 `json:"hold_percentage_sum"`
	BetPercentageSum       float64 `json:"bet_percentage_sum"`
}
