package transform

import (
	"slices"
	"strings"

	"github.com/raceflow/raceflow/stages/nztab"
)

// Pool sources recorded in RacePools.Source.
const (
	SourceTotePools = "tote_pools"
	SourceDividends = "dividends"
)

type poolKind int

const (
	poolUnknown poolKind = iota
	poolWin
	poolPlace
	poolQuinella
	poolTrifecta
	poolExacta
	poolFirst4
)

// totePoolKind maps a tote_pools product_type. The API spells First Four in
// several ways ("FirstFour", "First Four", "First 4"), so matching ignores
// case and spaces.
func totePoolKind(productType string) poolKind {
	var buf [32]byte
	key := buf[:0]
	for i := 0; i < len(productType); i++ {
		c := productType[i]
		if c == ' ' || c == '\t' {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		key = append(key, c)
	}
	switch string(key) {
	case "win":
		return poolWin
	case "place":
		return poolPlace
	case "quinella":
		return poolQuinella
	case "trifecta":
		return poolTrifecta
	case "exacta":
		return poolExacta
	case "first4", "firstfour":
		return poolFirst4
	}
	return poolUnknown
}

// dividendPoolKind classifies a lower-cased dividends product_name ("pool
// win", "pool first4") by substring. The order matters: exotic names are
// tested before "win" and "place" so a name can only land in one pool.
func dividendPoolKind(name string) poolKind {
	switch {
	case strings.Contains(name, "first"):
		return poolFirst4
	case strings.Contains(name, "quinella"):
		return poolQuinella
	case strings.Contains(name, "trifecta"):
		return poolTrifecta
	case strings.Contains(name, "exacta"):
		return poolExacta
	case strings.Contains(name, "place"):
		return poolPlace
	case strings.Contains(name, "win"):
		return poolWin
	}
	return poolUnknown
}

// poolCents converts a dollar amount to cents; amounts that are negative or
// too large to be money count as 0 and are reported, so one bad pool cannot
// poison the race's totals or overflow the per-runner arithmetic.
func poolCents(dollars float64, source, product string, q *qualityAcc) int64 {
	c, ok := hundredths(dollars)
	if !ok || c < 0 {
		q.warnf("%s %q amount %v is not a valid dollar amount; counted as 0", source, product, dollars)
		return 0
	}
	return c
}

func (p *RacePools) set(k poolKind, cents int64) {
	switch k {
	case poolWin:
		p.WinPoolTotal = cents
	case poolPlace:
		p.PlacePoolTotal = cents
	case poolQuinella:
		p.QuinellaPoolTotal = cents
	case poolTrifecta:
		p.TrifectaPoolTotal = cents
	case poolExacta:
		p.ExactaPoolTotal = cents
	case poolFirst4:
		p.First4PoolTotal = cents
	}
}

func (p *RacePools) get(k poolKind) int64 {
	switch k {
	case poolWin:
		return p.WinPoolTotal
	case poolPlace:
		return p.PlacePoolTotal
	case poolQuinella:
		return p.QuinellaPoolTotal
	case poolTrifecta:
		return p.TrifectaPoolTotal
	case poolExacta:
		return p.ExactaPoolTotal
	case poolFirst4:
		return p.First4PoolTotal
	}
	return 0
}

// extractPools implements docs/DOMAIN.md §2.1: tote_pools when present, else the
// largest pool_size per dividend product, else nil (no pools, no money flow).
func extractPools(raceID string, d *nztab.EventData, q *qualityAcc) *RacePools {
	switch {
	case len(d.TotePools) > 0:
		return poolsFromTote(raceID, d.TotePools, q)
	case len(d.Dividends) > 0:
		return poolsFromDividends(raceID, d.Dividends, q)
	}
	return nil
}

func poolsFromTote(raceID string, pools []nztab.TotePool, q *qualityAcc) *RacePools {
	p := &RacePools{RaceID: raceID, Currency: "$", Source: SourceTotePools, DataQualityScore: 100}
	var seen [poolFirst4 + 1]bool
	for _, tp := range pools {
		c := poolCents(tp.Total, "tote pool", tp.ProductType, q)
		p.TotalRacePool = addSat(p.TotalRacePool, c)
		p.ExtractedPools++
		k := totePoolKind(tp.ProductType)
		if k == poolUnknown {
			p.DataQualityScore -= 5
			q.unknownPools++
			continue
		}
		if seen[k] {
			// Order-independent choice: the larger figure of a repeated pool
			// is the later (pools only grow) one.
			q.warnf("tote pool type %q appears more than once; keeping the largest", tp.ProductType)
			if c <= p.get(k) {
				continue
			}
		}
		seen[k] = true
		p.set(k, c)
	}
	finishPoolScore(p, q)
	return p
}

func poolsFromDividends(raceID string, divs []nztab.Dividend, q *qualityAcc) *RacePools {
	p := &RacePools{RaceID: raceID, Currency: "$", Source: SourceDividends, DataQualityScore: 90}
	// Each product appears once per status (Interim and Final) and once per
	// placed runner, all with the same pool_size: the max de-duplicates.
	maxByName := make(map[string]int64, 8)
	for _, dv := range divs {
		name := strings.ToLower(strings.TrimSpace(dv.ProductName))
		c := poolCents(dv.PoolSize, "dividend pool_size of", dv.ProductName, q)
		if old, ok := maxByName[name]; !ok || c > old {
			maxByName[name] = c
		}
	}
	names := make([]string, 0, len(maxByName))
	for n := range maxByName {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		c := maxByName[n]
		p.TotalRacePool = addSat(p.TotalRacePool, c)
		p.ExtractedPools++
		k := dividendPoolKind(n)
		if k == poolUnknown {
			q.unknownPools++
			continue
		}
		if c > p.get(k) {
			p.set(k, c)
		}
	}
	finishPoolScore(p, q)
	return p
}

func finishPoolScore(p *RacePools, q *qualityAcc) {
	if p.WinPoolTotal == 0 || p.PlacePoolTotal == 0 {
		p.DataQualityScore -= 30
		q.warnf("race pools from %s lack a win or place total (win %d, place %d cents)",
			p.Source, p.WinPoolTotal, p.PlacePoolTotal)
	}
	if p.DataQualityScore < 0 {
		p.DataQualityScore = 0
	}
}

// addSat adds non-negative cents, saturating instead of wrapping.
func addSat(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return int64(^uint64(0) >> 1)
}
