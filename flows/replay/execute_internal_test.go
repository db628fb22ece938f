package replay

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/stages/transform"
)

func TestSplitByMeetingKeepsEachMeetingTogetherAndInOrder(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC)
	item := func(i int, race, meeting string) prepared {
		p := &storedPoll{key: pollKey{at: t0.Add(time.Duration(i) * time.Second), topic: "t"}, raceID: race}
		it := prepared{ev: event{key: p.key, poll: p}}
		if meeting == "" {
			it.fail = &Failure{RaceID: race}
		} else {
			it.snap = transform.RaceSnapshot{RaceID: race, Race: transform.Race{RaceID: race, MeetingID: meeting}}
		}
		return it
	}
	// Meeting A: races a1, a2; meeting B: race b1, whose skipped poll goes
	// with it; race c has only a skipped poll.
	items := []prepared{item(0, "a1", "A"), item(1, "b1", ""), item(2, "a2", "A"), item(3, "b1", "B"),
		item(4, "a1", "A"), item(5, "c", ""), item(6, "b1", "B")}
	ids := func(g []prepared) []int {
		var out []int
		for _, it := range g {
			out = append(out, it.ev.key.at.Second())
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		n      int
		groups [][]int
	}{
		{"one writer", 1, [][]int{{0, 1, 2, 3, 4, 5, 6}}},
		{"two writers, about even", 2, [][]int{{0, 2, 4, 5}, {1, 3, 6}}},
		{"as many writers as groups", 3, [][]int{{0, 2, 4}, {1, 3, 6}, {5}}},
		{"more writers than groups", 8, [][]int{{0, 2, 4}, {1, 3, 6}, {5}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got [][]int
			for _, g := range splitByMeeting(items, tc.n) {
				got = append(got, ids(g))
			}
			require.Equal(t, tc.groups, got)
		})
	}
}
