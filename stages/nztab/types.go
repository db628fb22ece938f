// Package nztab holds the NZ TAB Affiliates API payload types, their decoding
// and validation, and the HTTP client that fetches them. It knows nothing of
// Watermill or the database.
package nztab

import "encoding/json"

// Header is the envelope header every API response carries.
type Header struct {
	Title string `json:"title"`
	// GeneratedTime is when the API built the response (RFC3339, ns precision).
	GeneratedTime string `json:"generated_time"`
	URL           string `json:"url"`
}

// EventResponse is the whole body of GET /racing/events/{id}.
type EventResponse struct {
	Header Header    `json:"header"`
	Data   EventData `json:"data"`
	// RaceStatus is data.race.status mapped by ParseStatus; DecodeEvent sets
	// it, so a value returned without error always holds a valid Status.
	RaceStatus Status `json:"-"`
	// ReplacedChars counts the NUL characters and invalid UTF-8 sequences
	// DecodeEvent replaced with U+FFFD because PostgreSQL text cannot hold
	// them; the transform reports a non-zero count as a data-quality note.
	ReplacedChars int `json:"-"`
}

// EventData is the payload of a race event. Fields the pipeline does not use
// (big bets, derivatives, form) are not decoded.
type EventData struct {
	Race          Race           `json:"race"`
	Runners       []Runner       `json:"runners"`
	Results       []Result       `json:"results"`
	Dividends     []Dividend     `json:"dividends"`
	Substitutions []Substitution `json:"substitutions"`
	MoneyTracker  *MoneyTracker  `json:"money_tracker"`
	TotePools     []TotePool     `json:"tote_pools"`
	Error         string         `json:"error"`
}

// Race is data.race of an event. Times are Unix seconds (UTC); money in
// prize_monies is whole dollars.
type Race struct {
	EventID            string          `json:"event_id"`
	ID                 string          `json:"id"`
	MeetingID          string          `json:"meeting_id"`
	MeetingName        string          `json:"meeting_name"`
	DisplayMeetingName string          `json:"display_meeting_name"`
	Description        string          `json:"description"`
	Name               string          `json:"name"`
	RaceNumber         int             `json:"race_number"`
	Status             string          `json:"status"`
	AdvertisedStart    int64           `json:"advertised_start"`
	ActualStart        int64           `json:"actual_start"`
	RaceDateNZ         string          `json:"race_date_nz"`
	StartTimeNZ        string          `json:"start_time_nz"`
	Type               string          `json:"type"`
	Country            string          `json:"country"`
	State              string          `json:"state"`
	Distance           *int            `json:"distance"`
	Weather            string          `json:"weather"`
	TrackCondition     string          `json:"track_condition"`
	TrackSurface       string          `json:"track_surface"`
	TrackDirection     string          `json:"track_direction"`
	RailPosition       string          `json:"rail_position"`
	EntrantCount       *int            `json:"entrant_count"`
	FieldSize          *int            `json:"field_size"`
	PositionsPaid      *int            `json:"positions_paid"`
	PrizeMonies        map[string]any  `json:"prize_monies"`
	SilkURL            string          `json:"silk_url"`
	SilkBaseURL        string          `json:"silk_base_url"`
	VideoChannels      json.RawMessage `json:"video_channels"`
	Class              string          `json:"class"`
	Gait               string          `json:"gait"`
	StartType          string          `json:"start_type"`
	Protest            bool            `json:"protest"`
	ProtestReason      string          `json:"protest_reason"`
}

// RaceID returns event_id, falling back to id as the API sometimes does.
func (r Race) RaceID() string {
	if r.EventID != "" {
		return r.EventID
	}
	return r.ID
}

// RaceName returns description, falling back to name.
func (r Race) RaceName() string {
	if r.Description != "" {
		return r.Description
	}
	return r.Name
}

// Odds are decimal odds (dollar return per $1); nil when the API omits one.
type Odds struct {
	FixedWin   *float64 `json:"fixed_win"`
	FixedPlace *float64 `json:"fixed_place"`
	PoolWin    *float64 `json:"pool_win"`
	PoolPlace  *float64 `json:"pool_place"`
}

// Runner is one entrant of data.runners.
type Runner struct {
	EntrantID       string          `json:"entrant_id"`
	Name            string          `json:"name"`
	RunnerNumber    int             `json:"runner_number"`
	Barrier         *int            `json:"barrier"`
	BarrierPosition string          `json:"barrier_position"`
	IsScratched     bool            `json:"is_scratched"`
	IsLateScratched bool            `json:"is_late_scratched"`
	IsEmergency     bool            `json:"is_emergency"`
	ScratchTime     int64           `json:"scratch_time"`
	Odds            Odds            `json:"odds"`
	Favourite       bool            `json:"favourite"`
	Mover           bool            `json:"mover"`
	Jockey          string          `json:"jockey"`
	TrainerName     string          `json:"trainer_name"`
	SilkColours     string          `json:"silk_colours"`
	SilkURL64       string          `json:"silk_url_64x64"`
	SilkURL128      string          `json:"silk_url_128x128"`
	RunnerChange    json.RawMessage `json:"runner_change"`
}

// MoneyTracker is data.money_tracker: many rows per entrant, to be summed.
type MoneyTracker struct {
	Entrants []MoneyTrackerEntry `json:"entrants"`
}

// MoneyTrackerEntry is one money-tracker row; percentages are 0–100.
type MoneyTrackerEntry struct {
	EntrantID      string  `json:"entrant_id"`
	HoldPercentage float64 `json:"hold_percentage"`
	BetPercentage  float64 `json:"bet_percentage"`
}

// TotePool is one tote pool; Total is in dollars.
type TotePool struct {
	ProductType string  `json:"product_type"`
	Total       float64 `json:"total"`
	Status      string  `json:"status"`
	IsFinal     bool    `json:"is_final"`
}

// Result is one placing of data.results (Interim/Final races).
type Result struct {
	Position         int      `json:"position"`
	Name             string   `json:"name"`
	Barrier          *int     `json:"barrier"`
	RunnerNumber     int      `json:"runner_number"`
	EntrantID        string   `json:"entrant_id"`
	MarginLength     *float64 `json:"margin_length"`
	PositionalMargin string   `json:"positional_margin,omitempty"`
	WinningTime      *float64 `json:"winning_time"`
	TimeRan          *float64 `json:"time_ran"`
}

// Dividend is one row of data.dividends; money in dollars.
type Dividend struct {
	ID          string             `json:"id"`
	Tote        string             `json:"tote"`
	ProductName string             `json:"product_name"`
	Status      string             `json:"status"`
	Dividend    float64            `json:"dividend"`
	PoolSize    float64            `json:"pool_size"`
	JackpotSize float64            `json:"jackpot_size"`
	Positions   []DividendPosition `json:"positions"`
	Description string             `json:"description"`
}

// DividendPosition names a runner placed for a dividend.
type DividendPosition struct {
	RunnerNumber int `json:"runner_number"`
	Position     int `json:"position"`
}

// Substitution is one row of data.substitutions.
type Substitution struct {
	EntrantID   string `json:"entrant_id"`
	Tote        string `json:"tote"`
	ProductName string `json:"product_name"`
}

// MeetingsResponse is the whole body of GET /racing/meetings.
type MeetingsResponse struct {
	Header Header `json:"header"`
	Data   struct {
		Meetings []json.RawMessage `json:"meetings"`
	} `json:"data"`
}

// Meeting is one element of data.meetings. Date is RFC3339 whose date part
// is the NZ racing day.
type Meeting struct {
	Meeting        string        `json:"meeting"`
	Name           string        `json:"name"`
	Date           string        `json:"date"`
	Country        string        `json:"country"`
	Category       string        `json:"category"`
	CategoryName   string        `json:"category_name"`
	State          string        `json:"state"`
	TrackCondition *string       `json:"track_condition"`
	ToteStatus     string        `json:"tote_status"`
	MeetingType    string        `json:"meeting_type"`
	Races          []MeetingRace `json:"races"`
}

// MeetingRace is a race summary inside a meeting.
type MeetingRace struct {
	ID             string `json:"id"`
	RaceNumber     int    `json:"race_number"`
	Name           string `json:"name"`
	StartTime      string `json:"start_time"`
	TrackCondition string `json:"track_condition"`
	Distance       *int   `json:"distance"`
	Weather        string `json:"weather"`
	Country        string `json:"country"`
	State          string `json:"state"`
	Status         string `json:"status"`
}
