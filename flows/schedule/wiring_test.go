package schedule_test

import (
	"github.com/raceflow/raceflow/flows"
	"github.com/raceflow/raceflow/flows/schedule"
	"github.com/raceflow/raceflow/stages/nztab"
)

// Compile-time proof that the production pieces plug into the scheduler's
// small interfaces without adapters.
var (
	_ schedule.Poller = (*flows.Engine)(nil)
	_                 = func(e *flows.Engine, s *schedule.Scheduler) { e.OnResult(s.OnResult) }
	_                 = schedule.BaselineRunner{Fetch: (*nztab.Client)(nil).FetchMeetings}
)
