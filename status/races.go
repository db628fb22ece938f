package status

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/stages/nzday"
)

// RacesPage is the data of "/": the NZ day's races, grouped by meeting, with
// what the scheduler and the last polls say of each.
type RacesPage struct {
	GeneratedAt time.Time      `json:"generated_at"`
	Day         string         `json:"day"`
	Scheduling  bool           `json:"scheduling"` // this process schedules (races show cadence and next poll)
	Meetings    []MeetingGroup `json:"meetings"`
	Totals      RaceTotals     `json:"totals"`
	// Alerts are the day's latest alerts, newest first (at most
	// Config.DayAlerts).
	Alerts []Alert `json:"alerts"`
	// Warnings name the flow state that could not be read; the races are
	// still shown.
	Warnings []string `json:"warnings"`
}

// RaceTotals count the page's races.
type RaceTotals struct {
	Races    int `json:"races"`
	Tracked  int `json:"tracked"`
	Failing  int `json:"failing"`
	Poisoned int `json:"poisoned"`
}

// MeetingGroup is one meeting's races in race-number order.
type MeetingGroup struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Country  string    `json:"country"`
	RaceType string    `json:"race_type"`
	Races    []RaceRow `json:"races"`
}

// RaceRow is one race on "/".
type RaceRow struct {
	ID          string    `json:"id"`
	Number      int       `json:"number"`
	Name        string    `json:"name"`
	Status      string    `json:"status"`
	Start       time.Time `json:"start"`
	StartNZ     string    `json:"start_nz"` // HH:MM, Pacific/Auckland
	UntilStartS float64   `json:"until_start_s"`
	Tracked     bool      `json:"tracked"`
	CadenceS    float64   `json:"cadence_s,omitempty"`
	// NextPollInS is the time to the next poll (≤ 0: due now); absent while
	// a poll is in flight or the race is not tracked.
	NextPollInS *float64  `json:"next_poll_in_s,omitempty"`
	InFlight    bool      `json:"in_flight"`
	LastPoll    *LastPoll `json:"last_poll,omitempty"`
	// Failing: the last poll failed, was skipped or never came back.
	Failing bool `json:"failing"`
	// Poisoned counts the race's messages in the poison queue.
	Poisoned int `json:"poisoned"`
}

// LastPoll is the latest poll of a race that the page knows of: the flow's
// own result when this process saw it, else the latest poll stored.
type LastPoll struct {
	At      time.Time `json:"at"`
	AgeS    float64   `json:"age_s"`
	Outcome string    `json:"outcome"` // success, skipped, failed; "stored" for a poll read back from the database
	TotalMS *float64  `json:"total_ms,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// sqlDayRaces lists the races starting within the day, and any other race
// the scheduler tracks, each with its meeting and its latest stored poll.
// races_start_time_idx serves the day's range, the primary key the tracked
// ids; the meeting is one probe of its key per race (LIMIT 1 keeps the
// planner from hashing the whole meetings table instead), and the latest
// poll one backward probe of race_polls' key.
const sqlDayRaces = `
SELECT r.race_id, r.race_number, r.name, r.status, r.start_time,
       m.meeting_id, m.meeting_name, m.country, m.race_type, lp.observed_at
FROM races r
JOIN LATERAL (
    SELECT meeting_id, meeting_name, country, race_type FROM meetings WHERE meeting_id = r.meeting_id LIMIT 1
) m ON true
LEFT JOIN LATERAL (
    SELECT p.observed_at FROM race_polls p WHERE p.race_id = r.race_id ORDER BY p.observed_at DESC LIMIT 1
) lp ON true
WHERE (r.start_time >= $1 AND r.start_time < $2) OR r.race_id = ANY ($3::text[])
ORDER BY r.start_time, r.race_id`

// Races returns the data of "/".
func (m *Model) Races(ctx context.Context) (RacesPage, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.QueryTimeout)
	defer cancel()
	now := m.cfg.Now()
	day := nzday.Of(now)
	page := RacesPage{GeneratedAt: now, Day: day.String(), Meetings: []MeetingGroup{}, Alerts: []Alert{}, Warnings: []string{}}

	tracked := map[string]TrackedRace{}
	if m.deps.Schedule != nil {
		list, err := m.deps.Schedule.Tracked(ctx)
		if err != nil {
			page.Warnings = append(page.Warnings, "scheduler: "+err.Error())
		} else {
			page.Scheduling = m.deps.Leader == nil || m.deps.Leader.Leading()
			for _, tr := range list {
				tracked[tr.RaceID] = tr
			}
		}
	}
	var poisoned map[string]int
	if m.deps.Poison != nil {
		st, err := m.deps.Poison.PoisonStats(ctx)
		if err != nil {
			page.Warnings = append(page.Warnings, "poison queue: "+err.Error())
		}
		poisoned = st.ByRace
	}
	ids := make([]string, 0, len(tracked))
	for id := range tracked {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	rows, err := m.deps.DB.Query(ctx, sqlDayRaces, day.Start(), day.End(), ids)
	if err != nil {
		return page, unavailable("races", err)
	}
	type dbRace struct {
		RaceRow
		meeting    MeetingGroup
		lastStored *time.Time
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (dbRace, error) {
		var r dbRace
		err := row.Scan(&r.ID, &r.Number, &r.Name, &r.Status, &r.Start,
			&r.meeting.ID, &r.meeting.Name, &r.meeting.Country, &r.meeting.RaceType, &r.lastStored)
		return r, err
	})
	if err != nil {
		return page, unavailable("races", err)
	}

	last := m.deps.Recorder.Last()
	loc := nzday.Location()
	groups := map[string]*MeetingGroup{}
	var order []string
	for _, r := range list {
		row := r.RaceRow
		row.StartNZ = row.Start.In(loc).Format("15:04")
		row.UntilStartS = seconds(row.Start.Sub(now))
		if tr, ok := tracked[row.ID]; ok {
			row.Tracked, row.CadenceS, row.InFlight = true, seconds(tr.Cadence), tr.InFlight
			if !tr.NextPoll.IsZero() {
				in := seconds(tr.NextPoll.Sub(now))
				row.NextPollInS = &in
			}
			row.Failing = tr.Lost
			page.Totals.Tracked++
		}
		if p, ok := last[row.ID]; ok {
			total := p.TotalMS
			// A poll that lands while the page is read is newer than its
			// "now": it is no age, not a negative one.
			row.LastPoll = &LastPoll{At: p.At, AgeS: max(0, seconds(now.Sub(p.At))), Outcome: p.Status, TotalMS: &total}
			if p.Error != nil {
				row.LastPoll.Error = p.Error.Kind + ": " + p.Error.Message
			}
			row.Failing = row.Failing || p.Status != handlers.StatusSuccess
		} else if r.lastStored != nil {
			row.LastPoll = &LastPoll{At: *r.lastStored, AgeS: max(0, seconds(now.Sub(*r.lastStored))), Outcome: "stored"}
		}
		row.Poisoned = poisoned[row.ID]
		if row.Failing {
			page.Totals.Failing++
		}
		if row.Poisoned > 0 {
			page.Totals.Poisoned++
		}
		g := groups[r.meeting.ID]
		if g == nil {
			mg := r.meeting
			g = &mg
			groups[mg.ID] = g
			order = append(order, mg.ID)
		}
		g.Races = append(g.Races, row)
		page.Totals.Races++
	}
	// Meetings in the order of their first race's start; races by number.
	for _, id := range order {
		g := groups[id]
		sort.SliceStable(g.Races, func(i, j int) bool { return g.Races[i].Number < g.Races[j].Number })
		page.Meetings = append(page.Meetings, *g)
	}
	if len(tracked) > page.Totals.Tracked {
		page.Warnings = append(page.Warnings, fmt.Sprintf("%d tracked races are not in the database yet",
			len(tracked)-page.Totals.Tracked))
	}
	if page.Alerts, err = m.readAlerts(ctx, sqlDayAlerts, day.Start(), day.End(), m.cfg.DayAlerts); err != nil {
		return page, unavailable("alerts", err)
	}
	return page, nil
}
