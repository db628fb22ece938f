package nztabsim

import "encoding/json"

// The structs below are the wire shapes of the real NZ TAB Affiliates API.
// Field names, JSON types and units match it; fields the real API sends but
// nobody consumes are left out.

type header struct {
	Title         string `json:"title"`
	GeneratedTime string `json:"generated_time"`
	URL           string `json:"url"`
	Error         string `json:"error,omitempty"`
	ErrorCode     string `json:"error_code,omitempty"`
}

type errorBody struct {
	Header header `json:"header"`
}

type eventParams struct {
	Enc               string `json:"enc"`
	ID                string `json:"id"`
	PresentOverlay    bool   `json:"present_overlay"`
	WithBigBets       bool   `json:"with_big_bets"`
	WithLiveBets      bool   `json:"with_live_bets"`
	WithMoneyTracker  bool   `json:"with_money_tracker"`
	WithBiggestBet    bool   `json:"with_biggest_bet"`
	WillPays          bool   `json:"will_pays"`
	WithToteTrendData bool   `json:"with_tote_trends_data"`
	BetTypeFilter     string `json:"bet_type_filter"`
	BetsLimit         int    `json:"bets_limit"`
}

type eventBody struct {
	Header header      `json:"header"`
	Params eventParams `json:"params"`
	Data   eventData   `json:"data"`
}

type eventData struct {
	Race          eventRace       `json:"race"`
	Results       []result        `json:"results"`
	Dividends     []dividend      `json:"dividends"`
	Substitutions []substitution  `json:"substitutions"`
	Favourite     *eventRunner    `json:"favourite"`
	Runners       []eventRunner   `json:"runners"`
	Derivatives   json.RawMessage `json:"derivatives"`
	Mover         *eventRunner    `json:"mover"`
	BigBets       json.RawMessage `json:"big_bets"`
	LiveBets      json.RawMessage `json:"live_bets"`
	BiggestBet    json.RawMessage `json:"biggest_bet"`
	MoneyTracker  *moneyTracker   `json:"money_tracker,omitempty"`
	TotePools     []totePool      `json:"tote_pools"`
	Error         string          `json:"error"`
}

type eventRace struct {
	EventID               string         `json:"event_id"`
	MeetingName           string         `json:"meeting_name"`
	DisplayMeetingName    string         `json:"display_meeting_name"`
	MeetingID             string         `json:"meeting_id"`
	Status                string         `json:"status"`
	Description           string         `json:"description"`
	AdvertisedStart       int64          `json:"advertised_start"`
	ActualStart           int64          `json:"actual_start,omitempty"`
	AdvertisedStartString string         `json:"advertised_start_string"`
	ActualStartString     string         `json:"actual_start_string,omitempty"`
	RaceDateNZ            string         `json:"race_date_nz"`
	StartTimeNZ           string         `json:"start_time_nz"`
	RaceNumber            int            `json:"race_number"`
	Type                  string         `json:"type"`
	StartType             string         `json:"start_type"`
	Country               string         `json:"country"`
	State                 string         `json:"state"`
	Distance              int            `json:"distance"`
	Weather               string         `json:"weather"`
	FormGuide             string         `json:"form_guide"`
	Comment               string         `json:"comment"`
	SilkBaseURL           string         `json:"silk_base_url"`
	TrackCondition        string         `json:"track_condition"`
	TrackDirection        string         `json:"track_direction"`
	TrackSurface          string         `json:"track_surface"`
	TrackCircumference    int            `json:"track_circumference"`
	SilkURL               string         `json:"silk_url"`
	EntrantCount          int            `json:"entrant_count"`
	FieldSize             int            `json:"field_size"`
	PositionsPaid         int            `json:"positions_paid"`
	VideoChannels         []string       `json:"video_channels"`
	Tips                  []string       `json:"tips"`
	RailPosition          string         `json:"rail_position"`
	Group                 string         `json:"group"`
	Class                 string         `json:"class"`
	PrizeMonies           map[string]int `json:"prize_monies"`
	Gait                  string         `json:"gait"`
	TrackHomeStraight     int            `json:"track_home_straight"`
	Protest               bool           `json:"protest"`
	ProtestReason         string         `json:"protest_reason"`
	MileRate400           string         `json:"mile_rate_400"`
	MileRate800           string         `json:"mile_rate_800"`
}

type odds struct {
	FixedWin   *float64 `json:"fixed_win,omitempty"`
	FixedPlace *float64 `json:"fixed_place,omitempty"`
	PoolWin    *float64 `json:"pool_win,omitempty"`
	PoolPlace  *float64 `json:"pool_place,omitempty"`
}

type weight struct {
	Allocated string `json:"allocated"`
	Total     string `json:"total"`
}

type eventRunner struct {
	EntrantID         string            `json:"entrant_id"`
	MarketName        string            `json:"market_name"`
	PrimaryMarket     bool              `json:"primary_market"`
	Name              string            `json:"name"`
	IsScratched       bool              `json:"is_scratched"`
	IsLateScratched   bool              `json:"is_late_scratched"`
	IsEmergency       bool              `json:"is_emergency"`
	EmergencyPosition string            `json:"emergency_position"`
	RunnerChange      map[string]string `json:"runner_change,omitempty"`
	Odds              odds              `json:"odds"`
	ScratchTime       int64             `json:"scratch_time"`
	Barrier           int               `json:"barrier"`
	BarrierPosition   string            `json:"barrier_position,omitempty"`
	RunnerNumber      int               `json:"runner_number"`
	Age               int               `json:"age"`
	Sex               string            `json:"sex"`
	Colour            string            `json:"colour"`
	SilkColours       string            `json:"silk_colours"`
	SilkURL64         string            `json:"silk_url_64x64"`
	SilkURL128        string            `json:"silk_url_128x128"`
	Jockey            string            `json:"jockey"`
	Owners            string            `json:"owners"`
	TrainerName       string            `json:"trainer_name"`
	TrainerLocation   string            `json:"trainer_location"`
	Weight            *weight           `json:"weight,omitempty"`
	Favourite         bool              `json:"favourite"`
	Mover             bool              `json:"mover"`
}

type result struct {
	Position         int      `json:"position"`
	Name             string   `json:"name"`
	Barrier          int      `json:"barrier"`
	RunnerNumber     int      `json:"runner_number"`
	MarginLength     float64  `json:"margin_length"`
	PositionalMargin string   `json:"positional_margin,omitempty"`
	EntrantID        string   `json:"entrant_id"`
	WinningTime      *float64 `json:"winning_time,omitempty"`
	TimeRan          *float64 `json:"time_ran,omitempty"`
}

type dividendPosition struct {
	RunnerNumber int `json:"runner_number"`
	Position     int `json:"position"`
}

type dividend struct {
	ID          string             `json:"id"`
	Tote        string             `json:"tote"`
	ProductName string             `json:"product_name"`
	Status      string             `json:"status"`
	Dividend    float64            `json:"dividend"`
	PoolSize    float64            `json:"pool_size"`
	JackpotSize float64            `json:"jackpot_size"`
	Positions   []dividendPosition `json:"positions"`
	Description string             `json:"description"`
}

type substitution struct {
	EntrantID   string `json:"entrant_id"`
	Tote        string `json:"tote"`
	ProductName string `json:"product_name"`
}

type moneyTracker struct {
	Entrants []mtEntry `json:"entrants"`
}

type mtEntry struct {
	EntrantID      string `json:"entrant_id"`
	HoldPercentage int    `json:"hold_percentage"`
	BetPercentage  int    `json:"bet_percentage"`
}

type totePool struct {
	ProductType       string  `json:"product_type"`
	Total             float64 `json:"total"`
	Status            string  `json:"status"`
	Guarantee         float64 `json:"guarantee"`
	BroughtForward    float64 `json:"brought_forward"`
	Terminating       bool    `json:"terminating"`
	Jackpot           float64 `json:"jackpot"`
	Leg               int     `json:"leg"`
	IsCommingled      bool    `json:"is_commingled"`
	CommingledInfo    bool    `json:"commingled_info"`
	IsConcession      bool    `json:"is_concession"`
	IsFinal           bool    `json:"is_final"`
	WinInvestment     string  `json:"win_investment"`
	WillPayLiveUnits  float64 `json:"will_pay_live_units"`
	WillPayCurrentLeg int     `json:"will_pay_current_leg"`
	EarlyQuaddie      []int   `json:"early_quaddie,omitempty"`
}

type meetingsParams struct {
	Enc            string `json:"enc"`
	IDs            any    `json:"ids"`
	DateFrom       string `json:"date_from"`
	DateTo         string `json:"date_to"`
	Type           string `json:"type"`
	Country        string `json:"country"`
	Limit          int    `json:"limit"`
	Offset         int    `json:"offset"`
	Futures        bool   `json:"futures"`
	MeetingNumbers any    `json:"meeting_numbers"`
}

type meetingsBody struct {
	Header header       `json:"header"`
	Params any          `json:"params"`
	Data   meetingsData `json:"data"`
}

type meetingsData struct {
	Meetings []meetingJSON `json:"meetings"`
}

type meetingJSON struct {
	Meeting           string        `json:"meeting"`
	Name              string        `json:"name"`
	Date              string        `json:"date"`
	TrackCondition    string        `json:"track_condition"`
	Category          string        `json:"category"`
	CategoryName      string        `json:"category_name"`
	Country           string        `json:"country"`
	State             string        `json:"state"`
	VideoChannels     []string      `json:"video_channels,omitempty"`
	Quaddie           []int         `json:"quaddie,omitempty"`
	EarlyQuaddie      []int         `json:"early_quaddie,omitempty"`
	ToteMeetingNumber int           `json:"tote_meeting_number,omitempty"`
	ToteRacedayDate   string        `json:"tote_raceday_date,omitempty"`
	ToteStatus        string        `json:"tote_status,omitempty"`
	Races             []raceSummary `json:"races"`
}

type raceSummary struct {
	ID             string `json:"id"`
	RaceNumber     int    `json:"race_number"`
	Name           string `json:"name"`
	StartTime      string `json:"start_time"`
	ToteStartTime  string `json:"tote_start_time,omitempty"`
	TrackCondition string `json:"track_condition"`
	Distance       int    `json:"distance"`
	Weather        string `json:"weather"`
	Country        string `json:"country"`
	State          string `json:"state"`
	Status         string `json:"status"`
}

// eventData renders the race at instant t. withMoney controls whether the
// money tracker is included, as with_money_tracker does on the real API.
