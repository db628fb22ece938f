package flows_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows"
)

// TestEngineThatNeverRanReleasesItsBackendOnClose: an engine used only to
// publish polls closes its connections, and cannot be run afterwards.
func TestEngineThatNeverRanReleasesItsBackendOnClose(t *testing.T) {
	t.Parallel()
	onEach(t, backends, func(t *testing.T, backend string) {
		h := newHarness(t)
		e, err := flows.New(cfgFor(t, backend), flows.Deps{Pool: h.db.Pool, Fetcher: h.client, Logger: h.log})
		require.NoError(t, err)
		require.NoError(t, e.Close())
		require.NoError(t, e.Close(), "closing twice is harmless")
		require.Error(t, e.Run(context.Background()), "a released engine does not run")
	})
}
