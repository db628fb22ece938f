// Package nzday knows the NZ racing day: the calendar day in Pacific/Auckland,
// whose midnights are 23 or 25 hours apart at DST changes. Partitions, the
// daily baseline and meeting dates all use it, never the server's zone.
package nzday

import (
	"fmt"
	"sync"
	"time"
	_ "time/tzdata" // the zone must resolve on machines without /usr/share/zoneinfo
)

var loadZone = sync.OnceValue(func() *time.Location {
	loc, err := time.LoadLocation("Pacific/Auckland")
	if err != nil {
		// Unreachable: time/tzdata embeds the zone.
		panic(fmt.Sprintf("nzday: Pacific/Auckland: %v", err))
	}
	return loc
})

// Location is Pacific/Auckland.
func Location() *time.Location { return loadZone() }

// Day is a calendar day in New Zealand.
type Day struct {
	Year  int
	Month time.Month
	Day   int
}

// Of returns the NZ day that contains the instant t.
func Of(t time.Time) Day {
	y, m, d := t.In(Location()).Date()
	return Day{y, m, d}
}

// Parse reads YYYY-MM-DD.
func Parse(s string) (Day, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return Day{}, fmt.Errorf("nzday: %q is not YYYY-MM-DD: %w", s, err)
	}
	return Day{t.Year(), t.Month(), t.Day()}, nil
}

// Start is the instant of this day's NZ midnight.
func (d Day) Start() time.Time {
	return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, Location())
}

// End is the instant of the next day's NZ midnight (23 h, 24 h or 25 h later).
func (d Day) End() time.Time { return d.AddDays(1).Start() }

// AddDays moves n calendar days.
func (d Day) AddDays(n int) Day {
	t := time.Date(d.Year, d.Month, d.Day+n, 12, 0, 0, 0, time.UTC)
	return Day{t.Year(), t.Month(), t.Day()}
}

// Before reports whether d is an earlier day than o.
func (d Day) Before(o Day) bool {
	if d.Year != o.Year {
		return d.Year < o.Year
	}
	if d.Month != o.Month {
		return d.Month < o.Month
	}
	return d.Day < o.Day
}

// String is YYYY-MM-DD.
func (d Day) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.Year, int(d.Month), d.Day) }

// Compact is YYYYMMDD, used in partition names.
func (d Day) Compact() string { return fmt.Sprintf("%04d%02d%02d", d.Year, int(d.Month), d.Day) }
