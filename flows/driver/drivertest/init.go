package drivertest

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/driver"
)

// testInitAtOnce: instances of one flow started at the same moment each
// create the flow's topics; none may fail because another was first.
// Several rounds, each on a fresh namespace, so that the creations do
// overlap at least once.
func testInitAtOnce(t *testing.T, h Harness) {
	const rounds, instances = 5, 3
	for range rounds {
		ns := namespace("i")
		ds := make([]driver.Driver, instances)
		for i := range ds {
			ds[i] = open(t, h, ns)
		}
		start := make(chan struct{})
		errs := make([]error, instances)
		var wg sync.WaitGroup
		for i, d := range ds {
			wg.Go(func() {
				<-start
				errs[i] = d.Init(context.Background(), driver.Topics(ns, 4))
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "instance %d of %s", i, ns)
		}
	}
}
