package status

import "time"

// Query is one of the read model's statements with arguments, for the
// EXPLAIN test.
type Query struct {
	Name string
	SQL  string
	Args []any
}

// QueriesFor returns every statement the pages run, with the arguments they
// would get for the race raceID (starting at start, runners entrants, polled
// from first to last) on the day [dayStart, dayEnd) while the scheduler
// tracks tracked.
func QueriesFor(raceID string, start time.Time, entrants []string, first, last, dayStart, dayEnd time.Time,
	tracked []string) []Query {
	return []Query{
		{"day races", sqlDayRaces, []any{dayStart, dayEnd, tracked}},
		{"race", sqlRace, []any{raceID}},
		{"runners", sqlRunners, []any{raceID}},
		{"pools", sqlPools, []any{raceID}},
		{"results", sqlResults, []any{raceID}},
		{"stored polls", sqlStoredPolls, []any{raceID, 10}},
		{"poll range", sqlPollRange, []any{raceID, start.Add(-time.Hour), 40}},
		{"hold", sqlHold, []any{raceID, entrants, start.Add(-time.Hour), last}},
		{"increments", sqlIncrements, []any{raceID, entrants, first, last}},
		{"race alerts", sqlRaceAlerts, []any{raceID}},
		{"day alerts", sqlDayAlerts, []any{dayStart, dayEnd, 50}},
	}
}
