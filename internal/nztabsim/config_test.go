package nztabsim

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero value takes defaults", Config{}, true},
		{"explicit day", Config{Date: "2025-07-17", Meetings: 2, ExtraMeetings: -1, RacesPerMeeting: 10}, true},
		{"bad date", Config{Date: "17/07/2025"}, false},
		{"negative meetings", Config{Meetings: -1}, false},
		{"too many meetings", Config{Meetings: MaxMeetings + 1}, false},
		{"too many extra meetings", Config{ExtraMeetings: MaxMeetings + 1}, false},
		{"negative races", Config{RacesPerMeeting: -3}, false},
		{"too many races", Config{RacesPerMeeting: MaxRacesPerMeeting + 1}, false},
		{"first race past midnight", Config{FirstRaceAt: 24 * time.Hour}, false},
		{"negative first race", Config{FirstRaceAt: -time.Hour}, false},
		{"gap too small", Config{RaceGap: time.Second}, false},
		{"gap too large", Config{RaceGap: 3 * time.Hour}, false},
		{"fractional seconds", Config{RaceGap: 10*time.Minute + time.Millisecond}, false},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if tt.ok {
			require.NoError(t, err, tt.name)
		} else {
			require.ErrorIs(t, err, ErrInvalidConfig, tt.name)
		}
		_, err = New(tt.cfg)
		require.Equal(t, tt.ok, err == nil, "%s: New agrees with Validate: %v", tt.name, err)
	}
}

func TestConfigDefaultsFollowTheClock(t *testing.T) {
	t.Parallel()
	// 13:00 UTC on 16 July is 01:00 on 17 July in New Zealand.
	clk := NewManualClock(time.Date(2025, 7, 16, 13, 0, 0, 0, time.UTC))
	s, err := New(Config{Seed: 1, Clock: clk})
	require.NoError(t, err)
	require.Equal(t, "2025-07-17", s.Date())
	require.Same(t, clk, s.Clock())
	require.Len(t, s.Meetings(), DefaultMeetings+DefaultExtraMeetings)
	require.Len(t, s.Races(), (DefaultMeetings+DefaultExtraMeetings)*DefaultRacesPerMeeting)

	var first time.Time
	for _, r := range s.Races() {
		if (r.Country == "NZ" || r.Country == "AUS") && r.Category != "G" {
			first = r.StartTime
			break
		}
	}
	require.Equal(t, nzTime(t, "2025-07-17", "12:00"), first, "horse racing starts at FirstRaceAt")
	for _, m := range s.Meetings() {
		for i, id := range m.RaceIDs[1:] {
			prev, err := s.Race(m.RaceIDs[i])
			require.NoError(t, err)
			cur, err := s.Race(id)
			require.NoError(t, err)
			if m.Category != "G" {
				require.Equal(t, DefaultRaceGap, cur.StartTime.Sub(prev.StartTime))
			}
		}
	}

	none, err := New(Config{Seed: 1, Clock: clk, Meetings: 2, ExtraMeetings: -1})
	require.NoError(t, err)
	require.Len(t, none.Meetings(), 2, "a negative ExtraMeetings means none")
}

func TestSpeedClockRunsSimulatedTimeFaster(t *testing.T) {
	t.Parallel()
	wall := NewManualClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	start := time.Date(2025, 7, 16, 23, 30, 0, 0, time.UTC)
	tests := []struct {
		name    string
		speed   float64
		advance time.Duration
		want    time.Duration
	}{
		{"real time", 1, 10 * time.Second, 10 * time.Second},
		{"a minute per second", 60, 2 * time.Second, 2 * time.Minute},
		{"half speed", 0.5, 10 * time.Second, 5 * time.Second},
		{"non-positive speed means real time", 0, 10 * time.Second, 10 * time.Second},
	}
	for _, tt := range tests {
		c := NewSpeedClock(start, tt.speed, wall.Now)
		require.Equal(t, start, c.Now(), tt.name)
		wall.Advance(tt.advance)
		require.Equal(t, start.Add(tt.want), c.Now(), tt.name)
	}
}

func TestManualClockIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 7, 17, 0, 0, 0, 0, time.UTC)
	c := NewManualClock(t0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				c.Advance(time.Second)
				_ = c.Now()
			}
		})
	}
	wg.Wait()
	require.Equal(t, t0.Add(800*time.Second), c.Now())
	c.Set(t0)
	require.Equal(t, t0, c.Now())
}
