package baseline

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/raceflow/raceflow/stages/nzday"
	"github.com/raceflow/raceflow/stages/nztab"
)

// Response is one fetch of the meetings list: the raw pages as received and
// when. It is what the baseline stores, and everything Apply needs, so a
// stored response re-applied gives what the live baseline wrote.
type Response struct {
	// Day is the NZ racing day asked for, YYYY-MM-DD.
	Day string
	// ObservedAt is when the list was fetched; every row written from it
	// carries this instant.
	ObservedAt time.Time
	// Pages are the response bodies, in page order.
	Pages [][]byte
}

// ErrNoResponse is returned by Load when no response was stored at the
// instant asked for.
var ErrNoResponse = errors.New("baseline: no stored meetings-list response")

// ResponseOf is the Response of a fetched list. A list without raw pages (a
// test double's) gets its decoded meetings re-encoded as one page.
func ResponseOf(day string, observedAt time.Time, list nztab.MeetingsList) (Response, error) {
	r := Response{Day: day, ObservedAt: observedAt, Pages: list.Pages}
	if len(r.Pages) > 0 {
		return r, nil
	}
	page := struct {
		Header nztab.Header `json:"header"`
		Data   struct {
			Meetings []nztab.Meeting `json:"meetings"`
		} `json:"data"`
	}{Header: list.Header}
	page.Data.Meetings = list.Meetings
	body, err := json.Marshal(page)
	if err != nil {
		return Response{}, fmt.Errorf("baseline: encode meetings: %w", err)
	}
	r.Pages = [][]byte{body}
	return r, nil
}

// Decode decodes the pages into one list. A meeting repeated on a later page
// (the list shifted between requests) keeps its first occurrence, as the
// API client does; the indices of skipped elements count across pages.
func (r Response) Decode() (nztab.MeetingsList, error) {
	var out nztab.MeetingsList
	seen := make(map[string]bool)
	base := 0
	for i, body := range r.Pages {
		page, err := nztab.DecodeMeetings(body)
		if err != nil {
			return nztab.MeetingsList{}, fmt.Errorf("baseline: page %d of the meetings list at %s: %w", i+1,
				r.ObservedAt.UTC().Format(time.RFC3339), err)
		}
		if i == 0 {
			out.Header = page.Header
		}
		for _, m := range page.Meetings {
			if !seen[m.Meeting] {
				seen[m.Meeting] = true
				out.Meetings = append(out.Meetings, m)
			}
		}
		for _, sk := range page.Skipped {
			sk.Index += base
			out.Skipped = append(out.Skipped, sk)
		}
		base += len(page.Meetings) + len(page.Skipped)
	}
	out.Pages = r.Pages
	return out, nil
}

// Plan is a response mapped to rows, ready for Upsert.
type Plan struct {
	// Meetings and Races are the rows the filter keeps, each carrying the
	// response's instant.
	Meetings []MeetingRow
	Races    []RaceRow
	// Invalid are elements of the list that failed validation.
	Invalid []nztab.MeetingError
	// Skipped are kept meetings or races that could not be mapped.
	Skipped []Skip
}

// PlanOf decodes a response and maps it with filter (see Rows).
func PlanOf(resp Response, filter Filter) (Plan, error) {
	list, err := resp.Decode()
	if err != nil {
		return Plan{}, err
	}
	p := Plan{Invalid: list.Skipped}
	p.Meetings, p.Races, p.Skipped = Rows(list, filter)
	for i := range p.Meetings {
		p.Meetings[i].ObservedAt = resp.ObservedAt
	}
	for i := range p.Races {
		p.Races[i].ObservedAt = resp.ObservedAt
	}
	return p, nil
}

// Applied is what Apply did.
type Applied struct {
	Plan
	Counts Counts
}

// Apply maps a response with filter and upserts its rows: the live baseline
// does exactly this with each fetch (its Upsert is this package's), and a
// replay calls it with each stored response (Load), in observation order
// among the stored polls.
func Apply(ctx context.Context, db DB, resp Response, filter Filter) (Applied, error) {
	p, err := PlanOf(resp, filter)
	if err != nil {
		return Applied{}, err
	}
	c, err := Upsert(ctx, db, p.Meetings, p.Races)
	if err != nil {
		return Applied{Plan: p}, err
	}
	return Applied{Plan: p, Counts: c}, nil
}

// Store keeps a response, each page gzip-compressed, for replay. Storing the
// same instant again is a no-op.
func Store(ctx context.Context, db DB, resp Response) error {
	if resp.ObservedAt.IsZero() {
		return errors.New("baseline: store: response without an observation instant")
	}
	day, err := nzday.Parse(resp.Day)
	if err != nil {
		return fmt.Errorf("baseline: store: day: %w", err)
	}
	pages := make([][]byte, len(resp.Pages))
	for i, p := range resp.Pages {
		if pages[i], err = compress(p); err != nil {
			return fmt.Errorf("baseline: store: %w", err)
		}
	}
	if _, err := db.Exec(ctx, `INSERT INTO baseline_responses (observed_at, day, pages) VALUES ($1, $2::date, $3)
		ON CONFLICT (observed_at) DO NOTHING`, resp.ObservedAt, day.String(), pages); err != nil {
		return fmt.Errorf("baseline: store response of %s: %w", resp.ObservedAt.UTC().Format(time.RFC3339), err)
	}
	return nil
}

// Stored lists the instants of the stored responses observed in [from, to)
// (a zero bound is open), oldest first: a replay interleaves them with the
// stored polls.
func Stored(ctx context.Context, db DB, from, to time.Time) ([]time.Time, error) {
	var lo, hi *time.Time
	if !from.IsZero() {
		lo = &from
	}
	if !to.IsZero() {
		hi = &to
	}
	rows, err := db.Query(ctx, `SELECT observed_at FROM baseline_responses
		WHERE ($1::timestamptz IS NULL OR observed_at >= $1) AND ($2::timestamptz IS NULL OR observed_at < $2)
		ORDER BY observed_at`, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("baseline: list stored responses: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return nil, fmt.Errorf("baseline: list stored responses: %w", err)
	}
	return out, nil
}

// Load reads the response stored at observedAt (ErrNoResponse if none).
func Load(ctx context.Context, db DB, observedAt time.Time) (Response, error) {
	var day time.Time
	var pages [][]byte
	err := db.QueryRow(ctx, `SELECT day, pages FROM baseline_responses WHERE observed_at = $1`, observedAt).
		Scan(&day, &pages)
	if errors.Is(err, pgx.ErrNoRows) {
		return Response{}, fmt.Errorf("%w at %s", ErrNoResponse, observedAt.UTC().Format(time.RFC3339Nano))
	}
	if err != nil {
		return Response{}, fmt.Errorf("baseline: load response of %s: %w", observedAt.UTC().Format(time.RFC3339), err)
	}
	r := Response{Day: day.Format(time.DateOnly), ObservedAt: observedAt, Pages: make([][]byte, len(pages))}
	for i, p := range pages {
		if r.Pages[i], err = decompress(p); err != nil {
			return Response{}, fmt.Errorf("baseline: load response of %s, page %d: %w",
				observedAt.UTC().Format(time.RFC3339), i+1, err)
		}
	}
	return r, nil
}

// Prune deletes the responses stored before cutoff (the database's clock,
// like the stored topic's created_at, so one retention setting serves both),
// at most batch rows per statement, and returns how many it deleted.
func Prune(ctx context.Context, db DB, cutoff time.Time, batch int) (int64, error) {
	if batch < 1 {
		return 0, fmt.Errorf("baseline: prune batch %d must be at least 1", batch)
	}
	var total int64
	for {
		tag, err := db.Exec(ctx, `DELETE FROM baseline_responses WHERE observed_at IN (
			SELECT observed_at FROM baseline_responses WHERE stored_at < $1 ORDER BY stored_at LIMIT $2)`, cutoff, batch)
		if err != nil {
			return total, fmt.Errorf("baseline: prune stored responses: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return total, nil
		}
	}
}

func compress(p []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(p); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// maxPage bounds a decompressed page, far above any real list (~100 KB),
// so a corrupt row cannot exhaust memory.
const maxPage = 64 << 20

func decompress(p []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(p))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(zr, maxPage+1))
	if err != nil {
		return nil, err
	}
	if len(out) > maxPage {
		return nil, fmt.Errorf("page larger than %d bytes", maxPage)
	}
	return out, zr.Close()
}
