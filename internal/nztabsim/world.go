package nztabsim

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
)

// Step is the simulator's refresh interval: like TAB's feed, prices, money
// and pools change at most once per Step, and race status changes happen on
// Step boundaries of the day.
const Step = 15 * time.Second

// meeting is the immutable plan of one simulated meeting.
type meeting struct {
	idx      int
	id       string
	kind     kind
	venue    venue
	name     string
	tote     bool
	toteNo   int
	video    []string
	races    []*race
	weather  string
	baseCond string
	// wetCond replaces baseCond from degradeAt when rain sets in; zero
	// degradeAt means the track does not change.
	wetCond   string
	rains     bool
	degradeAt time.Time
	quaddie   []int
	early     []int
	// eqFinal is the EarlyQuadrella pool at the start of its first leg.
	eqFinal float64
	eqClose time.Time
}

// race is the immutable plan of one race: who runs, when its status changes,
// how it finishes. Its state at an instant is derived from this plan by
// Sim.state, never stored.
type race struct {
	idx       int
	id        string
	number    int
	meeting   *meeting
	name      string
	class     string
	distance  int
	rail      string
	gait      string
	startType string
	prize     map[string]int
	trackCirc int
	straight  int
	silkURL   string
	tips      []string

	adv       time.Time // advertised start; betting closes here
	actual    time.Time // when the field jumped
	interimAt time.Time
	finalAt   time.Time
	// abandonAt is zero unless the race is abandoned at that instant.
	abandonAt time.Time

	runners []*runner
	// order is the finishing order as indices into runners (starters only).
	order       []int
	margins     []float64 // cumulative lengths behind the winner
	marginText  []string
	winningTime float64

	pools []poolPlan
	// plunges are the staged plunges on the race (plunge.go).
	plunges []plungePlan
	// ghostID is a money-tracker id that is not a runner (an entrant withdrawn
	// before the final field, as seen in real data); empty for most races.
	ghostID    string
	ghostShare float64
}

// poolPlan is one tote pool of a race: its product and its size at close.
type poolPlan struct {
	product string
	final   float64
	// tau stretches the growth curve: exotic pools fill later than Win.
	tau float64
}

// wave is one slow oscillation of a runner's market strength.
type wave struct{ amp, period, phase float64 }

// runner is the immutable plan of one entrant.
type runner struct {
	id          string
	name        string
	number      int
	barrier     int
	barrierPos  string
	base        float64 // log-strength; its softmax is the true win chance
	waves       [3]wave
	toteWaves   [2]wave
	mtRows      int
	scratchAt   time.Time // zero when never scratched
	late        bool
	jockey      string
	trainer     string
	trainerLoc  string
	owners      string
	silkColours string
	silk64      string
	silk128     string
	age         int
	sex         string
	colour      string
	weight      string
	change      map[string]string
}

// meetingKinds are the baseline's meetings in rotation; extraKinds the ones
// it must filter out.
func meetingKinds() []kind {
	return []kind{{"NZ", "T"}, {"AUS", "T"}, {"NZ", "H"}, {"AUS", "H"}, {"AUS", "T"}, {"NZ", "T"}, {"AUS", "H"}, {"NZ", "H"}}
}

func extraKinds() []kind {
	return []kind{{"NZ", "G"}, {"USA", "T"}, {"UK", "T"}, {"AUS", "G"}, {"UK", "G"}, {"USA", "H"}}
}

// categoryName is the API's category_name for a category letter.
func categoryName(c string) string {
	switch c {
	case "T":
		return "Thoroughbred Horse Racing"
	case "H":
		return "Harness Horse Racing"
	default:
		return "Greyhound Racing"
	}
}

// build plans the whole race day. It runs once in New; afterwards the plan
// is only read.
func (s *Sim) build(cfg Config) {
	lex := newLexicon()
	used := map[string]int{}
	var all []*meeting
	add := func(k kind, first time.Time, gap time.Duration, races int) {
		m := s.buildMeeting(lex, len(all), k, used)
		all = append(all, m)
		r := s.rand(purposeMeeting, uint64(m.idx), 1)
		for n := 1; n <= races; n++ {
			rc := s.buildRace(lex, m, len(s.races), n, first.Add(time.Duration(n-1)*gap))
			m.races = append(m.races, rc)
			s.races = append(s.races, rc)
		}
		s.planMeetingPools(m, r)
	}
	start := s.dayStart.Add(cfg.FirstRaceAt)
	kinds := meetingKinds()
	for j := range cfg.Meetings {
		stagger := time.Duration(j*7) * time.Minute % cfg.RaceGap
		add(kinds[j%len(kinds)], start.Add(stagger), cfg.RaceGap, cfg.RacesPerMeeting)
	}
	extras := extraKinds()
	for j := range max(cfg.ExtraMeetings, 0) {
		k := extras[j%len(extras)]
		var first time.Time
		gap := cfg.RaceGap
		switch {
		case k.category == "G":
			first = start.Add(20*time.Minute + time.Duration(j*3)*time.Minute)
			gap = max(cfg.RaceGap*2/3, MinRaceGap).Truncate(time.Minute)
		case k.country == "USA":
			// NZ morning is a US afternoon: these are done before NZ racing starts.
			first = s.dayStart.Add(6*time.Hour + time.Duration(j*10)*time.Minute)
		default:
			first = start.Add(9*time.Hour + time.Duration(j*5)*time.Minute)
		}
		add(k, first, gap, cfg.RacesPerMeeting)
	}
	sort.SliceStable(all, func(a, b int) bool {
		return all[a].races[0].adv.Before(all[b].races[0].adv)
	})
	s.meetings = all
	for _, rc := range s.races {
		s.byID[rc.id] = rc
	}
	for _, m := range all {
		s.meetingByID[m.id] = m
	}
}

func (s *Sim) buildMeeting(lex *lexicon, idx int, k kind, used map[string]int) *meeting {
	r := s.rand(purposeMeeting, uint64(idx))
	venues := lex.venues[k]
	// Walk the kind's venues from a random point of the day so names repeat
	// only once every venue of that kind is in use.
	key := k.country + k.category
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	off := s.rand(purposeMeeting, h.Sum64()).IntN(len(venues))
	n := used[key]
	used[key] = n + 1
	v := venues[(off+n)%len(venues)]
	if n >= len(venues) {
		v.name = fmt.Sprintf("%s %d", v.name, n/len(venues)+1)
	}
	m := &meeting{
		idx:     idx,
		id:      keyedUUID(4, s.seed, s.dayKey, purposeMeetingID, uint64(idx)),
		kind:    k,
		venue:   v,
		name:    v.name,
		tote:    k.country == "NZ" || k.country == "AUS",
		toteNo:  idx + 1,
		weather: pick(r, lex.weather),
	}
	switch {
	case k.country == "NZ":
		m.video = []string{"Trackside1"}
	case k.country == "AUS":
		m.video = []string{"SKY 1"}
	}
	switch {
	case k.category == "H":
		m.baseCond, m.wetCond = pick(r, []string{"Fast", "Good", "Easy"}), "Slow"
	case k.category == "G":
		m.baseCond, m.wetCond = "Good", "Slow"
	case v.synthetic:
		m.baseCond, m.wetCond = "Synthetic", ""
	case k.country == "NZ" || k.country == "AUS":
		c := 3 + r.IntN(5) // Good3..Soft7
		m.baseCond, m.wetCond = trackRating(c), trackRating(min(c+2, 10))
	default:
		m.baseCond, m.wetCond = pick(r, []string{"Good", "Firm", "Fast"}), "Soft"
	}
	// Rain during the afternoon: planMeetingPools times it once the races
	// are known.
	m.rains = m.wetCond != "" && r.Float64() < 0.3
	return m
}

// trackRating is the NZ/AUS track rating name for 1..10.
func trackRating(n int) string {
	switch {
	case n <= 2:
		return fmt.Sprintf("Firm%d", n)
	case n <= 4:
		return fmt.Sprintf("Good%d", n)
	case n <= 7:
		return fmt.Sprintf("Soft%d", n)
	default:
		return fmt.Sprintf("Heavy%d", n)
	}
}

// planMeetingPools fixes the meeting-level facts that need its races: the
// quaddies, the EarlyQuadrella pool and when the track turns wet.
func (s *Sim) planMeetingPools(m *meeting, r *rand.Rand) {
	n := len(m.races)
	if m.rains {
		mid := m.races[n/2]
		m.degradeAt = mid.adv.Add(-time.Duration(5+r.IntN(20)) * time.Minute)
	}
	if !m.tote || m.kind.category == "G" {
		return
	}
	if n >= 4 {
		for i := n - 3; i <= n; i++ {
			m.quaddie = append(m.quaddie, i)
		}
	}
	if n >= 8 && r.Float64() < 0.7 {
		first := max(1, n-8)
		for i := first; i < first+4; i++ {
			m.early = append(m.early, i)
		}
		m.eqClose = m.races[first-1].adv
		m.eqFinal = round2(m.races[first-1].poolFinal("Win") * uniform(r, 0.5, 1.1))
	}
}

// buildRace plans one race.
func (s *Sim) buildRace(lex *lexicon, m *meeting, idx, number int, adv time.Time) *race {
	r := s.rand(purposeRace, uint64(idx))
	k := m.kind
	rc := &race{
		idx:     idx,
		id:      keyedUUID(4, s.seed, s.dayKey, purposeRaceID, uint64(idx)),
		number:  number,
		meeting: m,
		adv:     adv,
		rail:    pick(r, lex.rails),
	}
	var field int
	var speed float64
	switch k.category {
	case "T":
		rc.distance = pick(r, []int{1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800, 2000, 2100, 2200, 2400})
		if k.country == "USA" {
			rc.distance = pick(r, []int{1006, 1207, 1308, 1408, 1609, 1710})
		}
		field = 6 + r.IntN(6) + r.IntN(6) // 6..16, mostly 9..13
		speed = uniform(r, 16.0, 16.9)
		rc.trackCirc, rc.straight = 1400+100*r.IntN(9), 250+10*r.IntN(20)
	case "H":
		rc.distance = pick(r, []int{1609, 1700, 1950, 2000, 2200, 2600, 2700, 3200})
		field = 6 + r.IntN(5) + r.IntN(5) // 6..14
		speed = uniform(r, 13.3, 14.2)
		rc.gait = pick(r, []string{"Pace", "Pace", "Pace", "Trot"})
		rc.startType = pick(r, []string{"Mobile", "Mobile", "Standing"})
		rc.trackCirc, rc.straight = 800+200*r.IntN(4), 150+10*r.IntN(15)
	default:
		rc.distance = pick(r, []int{295, 350, 400, 457, 520, 595})
		field = 6 + r.IntN(3) // 6..8 boxes
		speed = uniform(r, 16.5, 17.3)
		rc.trackCirc, rc.straight = 400+10*r.IntN(10), 60+5*r.IntN(10)
	}
	rc.class, rc.name = raceName(r, lex, k, number, rc.distance, rc.gait, rc.startType)
	rc.prize = prizeMonies(r, k)
	rc.silkURL = fmt.Sprintf("https://silks.example.com/sprites/%s_SPRITE_64x64.png", rc.id)

	// Lifecycle: close at the advertised start, jump a little later, post
	// an interim result after the run and a final one a few minutes after.
	rc.actual = adv.Add(time.Duration(10+r.IntN(66)) * time.Second)
	run := time.Duration(float64(rc.distance) / speed * float64(time.Second))
	interim := rc.actual.Add(run + time.Duration(20+r.IntN(31))*time.Second)
	rc.interimAt = alignUp(s.dayStart, interim)
	if earliest := adv.Add(90 * time.Second); rc.interimAt.Before(earliest) {
		rc.interimAt = alignUp(s.dayStart, earliest)
	}
	rc.finalAt = rc.interimAt.Add(time.Duration(10+r.IntN(5)) * Step)
	rc.winningTime = round2(float64(rc.distance) / speed)
	if r.Float64() < 1.0/30 {
		if r.Float64() < 0.8 {
			rc.abandonAt = adv.Add(-time.Duration(r.IntN(361)) * Step) // up to 90 min before
		} else {
			rc.abandonAt = adv.Add(time.Duration(1+r.IntN(4)) * Step) // after the jump: a false start, a fall
		}
	}

	rc.runners = s.buildRunners(lex, r, rc, field)
	rc.order, rc.margins, rc.marginText = finishOrder(r, rc.runners)
	rc.pools = poolPlans(r, k, number)
	for i := 0; i < min(3, len(rc.order)); i++ {
		rc.tips = append(rc.tips, rc.runners[rc.order[(i+1)%len(rc.order)]].id)
	}
	if r.Float64() < 0.25 {
		rc.ghostID = keyedUUID(4, s.seed, s.dayKey, purposeGhostID, uint64(idx))
		rc.ghostShare = uniform(r, 0.01, 0.08)
	}
	return rc
}

// alignUp rounds t up to the next Step boundary of the day.
func alignUp(dayStart, t time.Time) time.Time {
	d := t.Sub(dayStart)
	if rem := d % Step; rem != 0 {
		if rem < 0 {
			rem += Step
		}
		d += Step - rem
	}
	return dayStart.Add(d)
}

func raceName(r *rand.Rand, lex *lexicon, k kind, number, dist int, gait, startType string) (class, name string) {
	sponsor := pick(r, lex.sponsors)
	switch {
	case k.country == "NZ" && k.category == "T":
		class = pick(r, []string{"Maiden", "Rating 65", "Rating 72", "Rating 82", "Open Handicap", "Rating 60 HCP"})
		kindWord := "HANDICAP"
		if class == "Maiden" {
			kindWord = "MAIDEN"
		}
		return class, fmt.Sprintf("%s %s %d", sponsor, kindWord, dist)
	case k.country == "AUS" && k.category == "T":
		class = pick(r, []string{"Mdn", "Bm58", "Bm66", "Bm72", "Cl1", "Hcp"})
		return class, fmt.Sprintf("%s Showcase (%s)", titleCase(sponsor), class)
	case k.category == "H" && (k.country == "NZ" || k.country == "AUS"):
		class = pick(r, []string{"R40-52", "R53-65", "C0", "C1", "Open"})
		return class, fmt.Sprintf("%s %s %s", sponsor, strings.ToUpper(startType), strings.ToUpper(gait))
	case k.category == "G" && (k.country == "NZ" || k.country == "AUS"):
		class = pick(r, []string{"Maiden", "Grade 5", "Grade 6", "Free For All"})
		return class, fmt.Sprintf("%s %dM %s", sponsor, dist, strings.ToUpper(class))
	default:
		return "", fmt.Sprintf("Race %d", number)
	}
}

// titleCase turns "SKY RACING" into "Sky Racing".
func titleCase(s string) string {
	words := strings.Fields(strings.ToLower(s))
	for i, w := range words {
		words[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	return strings.Join(words, " ")
}

// prizeMonies splits a purse the way NZ clubs do: 56/18/9/5 % and 2 % down
// to tenth, whole dollars.
func prizeMonies(r *rand.Rand, k kind) map[string]int {
	base := map[string]float64{"T": 20000, "H": 12000, "G": 3000}[k.category]
	if k.country == "AUS" {
		base *= 2.2
	}
	total := math.Round(base*math.Exp(r.NormFloat64()*0.35)/100) * 100
	shares := []float64{56, 18, 9, 5, 2, 2, 2, 2, 2, 2}
	names := []string{"1st", "2nd", "3rd", "4th", "5th", "6th", "7th", "8th", "9th", "10th"}
	out := make(map[string]int, len(names)+1)
	sum := 0
	for i, sh := range shares {
		v := int(math.Round(total*sh/1000) * 10)
		out[names[i]] = v
		sum += v
	}
	out["total_value"] = sum
	return out
}

func (s *Sim) buildRunners(lex *lexicon, r *rand.Rand, rc *race, field int) []*runner {
	k := rc.meeting.kind
	names := map[string]bool{}
	barriers := r.Perm(field)
	out := make([]*runner, field)
	for i := range field {
		var name string
		for {
			if k.category == "G" {
				name = pick(r, lex.dogWords1) + " " + pick(r, lex.dogWords2)
			} else {
				name = pick(r, lex.horseWords1) + " " + pick(r, lex.horseWords2)
			}
			if !names[name] {
				break
			}
		}
		names[name] = true
		rn := &runner{
			id:      keyedUUID(4, s.seed, s.dayKey, purposeEntrantID, uint64(rc.idx), uint64(i)),
			name:    name,
			number:  i + 1,
			barrier: barriers[i] + 1,
			base:    r.NormFloat64() * 0.9,
			mtRows:  3 + r.IntN(7),
			trainer: pick(r, lex.firstNames) + " " + pick(r, lex.lastNames),
			age:     2 + r.IntN(8),
			colour:  pick(r, []string{"b", "br", "ch", "gr", "bl"}),
		}
		for w := range rn.waves {
			rn.waves[w] = wave{amp: uniform(r, 0.3, 1), period: []float64{1200, 3600, 10800}[w], phase: uniform(r, 0, 2*math.Pi)}
		}
		for w := range rn.toteWaves {
			rn.toteWaves[w] = wave{amp: uniform(r, 0.3, 1), period: []float64{900, 2700}[w], phase: uniform(r, 0, 2*math.Pi)}
		}
		rn.trainerLoc = pick(r, lex.locations)
		rn.owners = pick(r, lex.lastNames) + " & " + pick(r, lex.lastNames)
		c1, c2 := pick(r, lex.colours), pick(r, lex.colours)
		rn.silkColours = fmt.Sprintf("%s & %s %s, %s cap", c1, strings.ToLower(c2), pick(r, lex.patterns), strings.ToLower(c1))
		slug := strings.ReplaceAll(strings.ToLower(name), " ", "")
		rn.silk64 = fmt.Sprintf("https://silks.example.com/events/%s/%s_64x64.png", rc.id[:8], slug)
		rn.silk128 = fmt.Sprintf("https://silks.example.com/events/%s/%s_128x128.png", rc.id[:8], slug)
		switch k.category {
		case "T":
			rn.jockey = pick(r, lex.firstNames) + " " + pick(r, lex.lastNames)
			rn.sex = pick(r, []string{"g", "g", "m", "f", "c", "h"})
			rn.weight = fmt.Sprintf("%.1f", 54+0.5*float64(r.IntN(15)))
		case "H":
			rn.jockey = pick(r, lex.firstNames) + " " + pick(r, lex.lastNames)
			rn.sex = pick(r, []string{"g", "g", "m", "h"})
			// Harness barriers are draws on the front and second rows.
			row, pos := "Fr", i+1
			if i >= 8 {
				row, pos = "Sr", i-7
			}
			rn.barrierPos = fmt.Sprintf("%s%d", row, pos)
			rn.barrier = pos
		default:
			rn.sex = pick(r, []string{"d", "b"})
			rn.age = 2 + r.IntN(3)
		}
		if r.Float64() < 0.3 {
			y := 2019 + r.IntN(6)
			rn.change = map[string]string{
				fmt.Sprintf("%02d/%02d/%d", 1+r.IntN(28), 1+r.IntN(12), y): pick(r, lex.changes),
			}
		}
		out[i] = rn
	}
	// One or two scratchings during the day, none after betting closes; a
	// field never drops below four starters.
	scratchings := 0
	if u := r.Float64(); u < 0.15 {
		scratchings = 2
	} else if u < 0.45 {
		scratchings = 1
	}
	for _, i := range r.Perm(field)[:min(scratchings, field-4)] {
		before := time.Duration(8+r.IntN(953)) * Step // 2 min .. 4 h before the start
		out[i].scratchAt = rc.adv.Add(-before)
		out[i].late = before <= time.Hour
	}
	return out
}

// finishOrder draws the result from the runners' true chances
// (Plackett–Luce over the starters), with margins in lengths.
func finishOrder(r *rand.Rand, runners []*runner) ([]int, []float64, []string) {
	var left []int
	for i, rn := range runners {
		if rn.scratchAt.IsZero() {
			left = append(left, i)
		}
	}
	order := make([]int, 0, len(left))
	for len(left) > 0 {
		var sum float64
		for _, i := range left {
			sum += math.Exp(runners[i].base)
		}
		u := r.Float64() * sum
		j := len(left) - 1
		for n, i := range left {
			u -= math.Exp(runners[i].base)
			if u <= 0 {
				j = n
				break
			}
		}
		order = append(order, left[j])
		left = append(left[:j], left[j+1:]...)
	}
	gaps := []struct {
		l float64
		t string
	}{
		{0.05, "NSE"}, {0.1, "SH HD"}, {0.2, "1/2 HD"}, {0.3, "HD"}, {0.4, "LG NK"}, {0.5, "1/2L"},
		{0.75, "3/4L"}, {1, "1L"}, {1.25, "1-1/4L"}, {1.5, "1-1/2L"}, {1.75, "1-3/4L"}, {2, "2L"},
		{2.25, "2-1/4L"}, {2.5, "2-1/2L"}, {3, "3L"}, {4, "4L"}, {5, "5L"},
	}
	margins := make([]float64, len(order))
	texts := make([]string, len(order))
	var cum float64
	for i := 1; i < len(order); i++ {
		g := gaps[min(r.IntN(len(gaps)), r.IntN(len(gaps)))] // favour close finishes
		cum += g.l
		margins[i] = round1(cum)
		texts[i] = g.t
	}
	return order, margins, texts
}

// poolPlans sizes a race's tote pools at close. Dollar amounts follow the
// real sample's proportions (Place ≈ 0.43 × Win, Quinella ≈ 0.58, …).
func poolPlans(r *rand.Rand, k kind, number int) []poolPlan {
	median := map[kind]float64{
		{"NZ", "T"}: 8000, {"NZ", "H"}: 5000, {"AUS", "T"}: 24000, {"AUS", "H"}: 8000,
		{"NZ", "G"}: 2500, {"AUS", "G"}: 3500,
	}[k]
	if median == 0 {
		median = 3000
	}
	win := median * math.Exp(r.NormFloat64()*0.45) * (0.85 + 0.04*float64(number))
	pools := []poolPlan{
		{"Win", round2(win), 1},
		{"Place", round2(win * uniform(r, 0.35, 0.5)), 1},
		{"Quinella", round2(win * uniform(r, 0.45, 0.65)), 0.8},
		{"Trifecta", round2(win * uniform(r, 0.7, 1.0)), 0.7},
		{"FirstFour", round2(win * uniform(r, 0.4, 0.6)), 0.7},
	}
	// The API lists pools in no fixed order; keep one order per race.
	r.Shuffle(len(pools), func(i, j int) { pools[i], pools[j] = pools[j], pools[i] })
	return pools
}

// poolFinal is the size at close of the race's pool of that product, 0 when
// the race has none.
func (rc *race) poolFinal(product string) float64 {
	for _, p := range rc.pools {
		if p.product == product {
			return p.final
		}
	}
	return 0
}
