package pgtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Queryer runs queries; *pgxpool.Pool, *pgx.Conn and pgx.Tx satisfy it.
type Queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Bookkeeping are the columns of the domain tables that say when and in
// which order a row was written, not what it holds: databases written at
// other times, or in another order, differ there and nowhere else.
func Bookkeeping() []string { return []string{"created_at", "updated_at", "written_at", "written_seq"} }

// DomainTables are the tables the pipeline writes, parents first.
func DomainTables() []string {
	return []string{"meetings", "races", "entrants", "race_pools", "race_results", "race_polls",
		"money_flow_history", "odds_history", "alerts"}
}

// Checksum returns the md5 of every row of table rendered as text, without
// the excluded columns (e.g. created_at, updated_at, written_at when
// comparing databases written at different times), rows ordered by all
// remaining columns. Timestamps are rendered in UTC so the session time zone
// does not matter. Every excluded column must exist in the table, so a typo
// cannot silently weaken a comparison.
func Checksum(tb testing.TB, db Queryer, table string, exclude ...string) string {
	tb.Helper()
	cols, err := columns(db, table)
	if err != nil {
		tb.Fatalf("pgtest: checksum %s: %v", table, err)
	}
	for _, x := range exclude {
		if !slices.ContainsFunc(cols, func(c column) bool { return c.name == x }) {
			tb.Fatalf("pgtest: checksum %s: no column %q to exclude", table, x)
		}
	}
	sum, err := checksum(db, table, cols, exclude)
	if err != nil {
		tb.Fatalf("pgtest: checksum %s: %v", table, err)
	}
	return sum
}

// Checksums returns Checksum of every domain table, keyed by table name;
// each excluded column is left out of the tables that have it and must exist
// in at least one of them.
func Checksums(tb testing.TB, db Queryer, exclude ...string) map[string]string {
	tb.Helper()
	out := make(map[string]string, len(DomainTables()))
	used := make(map[string]bool, len(exclude))
	for _, table := range DomainTables() {
		cols, err := columns(db, table)
		if err != nil {
			tb.Fatalf("pgtest: checksum %s: %v", table, err)
		}
		for _, c := range cols {
			if slices.Contains(exclude, c.name) {
				used[c.name] = true
			}
		}
		sum, err := checksum(db, table, cols, exclude)
		if err != nil {
			tb.Fatalf("pgtest: checksum %s: %v", table, err)
		}
		out[table] = sum
	}
	for _, x := range exclude {
		if !used[x] {
			tb.Fatalf("pgtest: checksums: no domain table has column %q to exclude", x)
		}
	}
	return out
}

type column struct {
	name, typ string
}

func columns(db Queryer, table string) ([]column, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := db.Query(ctx, `
		SELECT a.attname, format_type(a.atttypid, a.atttypmod)
		FROM pg_attribute a
		WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, pgx.Identifier{table}.Sanitize())
	if err != nil {
		return nil, err
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		err := r.Scan(&c.name, &c.typ)
		return c, err
	})
	if err != nil {
		return nil, err
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("no such table")
	}
	return cols, nil
}

// columnList is the select list of cols without the excluded ones, with
// timestamps rendered in UTC.
func columnList(cols []column, exclude []string) (string, error) {
	var exprs []string
	for _, c := range cols {
		if slices.Contains(exclude, c.name) {
			continue
		}
		e := pgx.Identifier{c.name}.Sanitize()
		if c.typ == "timestamp with time zone" {
			e = "(" + e + " AT TIME ZONE 'UTC')"
		}
		exprs = append(exprs, e)
	}
	if len(exprs) == 0 {
		return "", fmt.Errorf("every column excluded")
	}
	return strings.Join(exprs, ", "), nil
}

func checksum(db Queryer, table string, cols []column, exclude []string) (string, error) {
	list, err := columnList(cols, exclude)
	if err != nil {
		return "", err
	}
	q := fmt.Sprintf(`SELECT md5(COALESCE(string_agg(ROW(%s)::text, E'\n' ORDER BY %s), '')) FROM %s`,
		list, list, pgx.Identifier{table}.Sanitize())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var sum string
	if err := db.QueryRow(ctx, q).Scan(&sum); err != nil {
		return "", err
	}
	return sum, nil
}

// Rows returns every row of table rendered as text (timestamps in UTC),
// without the excluded columns, sorted: what Checksum hashes, for a test
// that must say which rows differ. Excluded columns the table lacks are
// ignored, so one list serves every table.
func Rows(tb testing.TB, db Queryer, table string, exclude ...string) []string {
	tb.Helper()
	cols, err := columns(db, table)
	if err != nil {
		tb.Fatalf("pgtest: rows of %s: %v", table, err)
	}
	list, err := columnList(cols, exclude)
	if err != nil {
		tb.Fatalf("pgtest: rows of %s: %v", table, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := db.Query(ctx, fmt.Sprintf(`SELECT ROW(%s)::text FROM %s ORDER BY 1`, list, pgx.Identifier{table}.Sanitize()))
	if err != nil {
		tb.Fatalf("pgtest: rows of %s: %v", table, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatalf("pgtest: rows of %s: %v", table, err)
	}
	slices.Sort(out)
	return out
}

// DiffRows describes how got differs from want (both sorted, as Rows
// returns them): up to limit rows missing from got and limit rows got has in
// excess, or "" when they are equal.
func DiffRows(want, got []string, limit int) string {
	var missing, extra []string
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case j == len(got) || (i < len(want) && want[i] < got[j]):
			missing = append(missing, want[i])
			i++
		case i == len(want) || got[j] < want[i]:
			extra = append(extra, got[j])
			j++
		default:
			i++
			j++
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d rows missing, %d rows in excess (of %d wanted)", len(missing), len(extra), len(want))
	for _, r := range missing[:min(limit, len(missing))] {
		b.WriteString("\n  - " + r)
	}
	for _, r := range extra[:min(limit, len(extra))] {
		b.WriteString("\n  + " + r)
	}
	return b.String()
}
