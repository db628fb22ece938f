package pgtest

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// Scan is one read of a table in a query plan.
type Scan struct {
	Node     string // "Index Scan", "Seq Scan", …
	Relation string // the table or partition read
	Index    string // the index walked, if any
}

// String reads as "Index Scan on races races_pkey".
func (s Scan) String() string { return s.Node + " on " + s.Relation + " " + s.Index }

// Scans plans query with args (EXPLAIN, not run) and returns every read of a
// table in the plan, and the plan as PostgreSQL printed it, for messages.
func (db *DB) Scans(t testing.TB, query string, args ...any) ([]Scan, string) {
	t.Helper()
	var out []byte
	require.NoError(t, db.Pool.QueryRow(context.Background(), "EXPLAIN (FORMAT JSON) "+query, args...).Scan(&out))
	var plans []struct {
		Plan planNode `json:"Plan"`
	}
	require.NoError(t, json.Unmarshal(out, &plans))
	require.Len(t, plans, 1)
	var scans []Scan
	plans[0].Plan.walk(func(n planNode) {
		if n.RelationName != "" {
			scans = append(scans, Scan{Node: n.NodeType, Relation: n.RelationName, Index: n.IndexName})
		}
	})
	return scans, string(out)
}

// planNode is the part of EXPLAIN (FORMAT JSON) that Scans reads.
type planNode struct {
	NodeType     string     `json:"Node Type"`
	RelationName string     `json:"Relation Name"`
	IndexName    string     `json:"Index Name"`
	Plans        []planNode `json:"Plans"`
}

func (n planNode) walk(fn func(planNode)) {
	fn(n)
	for _, c := range n.Plans {
		c.walk(fn)
	}
}
