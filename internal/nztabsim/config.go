package nztabsim

import (
	"errors"
	"fmt"
	"time"

	"github.com/raceflow/raceflow/stages/nzday"
)

// Defaults of Config; a zero field means "use the default".
const (
	DefaultMeetings        = 6
	DefaultExtraMeetings   = 3
	DefaultRacesPerMeeting = 8
	DefaultFirstRaceAt     = 12 * time.Hour
	DefaultRaceGap         = 30 * time.Minute

	// MaxMeetings bounds Meetings and ExtraMeetings each.
	MaxMeetings = 40
	// MaxRacesPerMeeting is the longest card the simulator builds.
	MaxRacesPerMeeting = 14
	// MinRaceGap keeps one meeting's races from overlapping absurdly.
	MinRaceGap = time.Minute
)

// ErrInvalidConfig marks a Config that Validate rejects.
var ErrInvalidConfig = errors.New("nztabsim: invalid config")

// Config describes the simulated race day. The same Config (seed, date and
// counts) always produces the same day: the same ids, fields, prices and
// results at the same simulated instants.
type Config struct {
	// Seed selects the race day; together with Date it derives every id and
	// every random value.
	Seed int64
	// Date is the NZ racing day, YYYY-MM-DD. Default: the NZ date of
	// Clock.Now() when the simulator is built.
	Date string
	// Meetings is the number of meetings a baseline keeps: NZ and AUS,
	// thoroughbred (T) and harness (H). Default 6.
	Meetings int
	// ExtraMeetings is the number of meetings a baseline must filter out:
	// greyhounds (G) and other countries (USA, UK). Default 3; a negative
	// value means none.
	ExtraMeetings int
	// RacesPerMeeting is the card length of horse meetings. Default 8.
	RacesPerMeeting int
	// FirstRaceAt is when the first race of the day starts, as an offset from
	// NZ midnight. Default 12h. Other meetings are staggered a few minutes
	// after it.
	FirstRaceAt time.Duration
	// RaceGap is the time between consecutive races of one meeting.
	// Default 30m.
	RaceGap time.Duration
	// Clock gives the simulated "now". Default: the wall clock.
	Clock Clock
	// Plunges are late plunges staged on the day (plunge.go).
	Plunges []Plunge
}

// WithDefaults returns c with every zero field replaced by its default.
func (c Config) WithDefaults() Config {
	if c.Clock == nil {
		c.Clock = ClockFunc(time.Now)
	}
	if c.Date == "" {
		c.Date = nzday.Of(c.Clock.Now()).String()
	}
	if c.Meetings == 0 {
		c.Meetings = DefaultMeetings
	}
	switch {
	case c.ExtraMeetings == 0:
		c.ExtraMeetings = DefaultExtraMeetings
	case c.ExtraMeetings < 0:
		c.ExtraMeetings = -1
	}
	if c.RacesPerMeeting == 0 {
		c.RacesPerMeeting = DefaultRacesPerMeeting
	}
	if c.FirstRaceAt == 0 {
		c.FirstRaceAt = DefaultFirstRaceAt
	}
	if c.RaceGap == 0 {
		c.RaceGap = DefaultRaceGap
	}
	return c
}

// Validate reports the first field that is out of range. Zero fields are
// valid: they take their defaults.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.Date != "" {
		if _, err := nzday.Parse(c.Date); err != nil {
			return fmt.Errorf("%w: Date: %w", ErrInvalidConfig, err)
		}
	}
	if c.Meetings < 0 || c.Meetings > MaxMeetings {
		return bad("Meetings must be in [0, %d], got %d", MaxMeetings, c.Meetings)
	}
	if c.ExtraMeetings > MaxMeetings {
		return bad("ExtraMeetings must be at most %d, got %d", MaxMeetings, c.ExtraMeetings)
	}
	if c.RacesPerMeeting < 0 || c.RacesPerMeeting > MaxRacesPerMeeting {
		return bad("RacesPerMeeting must be in [0, %d], got %d", MaxRacesPerMeeting, c.RacesPerMeeting)
	}
	if c.FirstRaceAt < 0 || c.FirstRaceAt >= 24*time.Hour {
		return bad("FirstRaceAt must be in [0, 24h), got %s", c.FirstRaceAt)
	}
	if c.RaceGap != 0 && (c.RaceGap < MinRaceGap || c.RaceGap > 2*time.Hour) {
		return bad("RaceGap must be in [%s, 2h], got %s", MinRaceGap, c.RaceGap)
	}
	if c.RaceGap%time.Second != 0 || c.FirstRaceAt%time.Second != 0 {
		return bad("FirstRaceAt and RaceGap must be whole seconds")
	}
	return nil
}
