package memdriver_test

import (
	"io"
	"log"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/flows/driver/drivertest"
	"github.com/raceflow/raceflow/flows/driver/memdriver"
	"github.com/raceflow/raceflow/internal/pgtest"
)

func TestMain(m *testing.M) {
	// Watermill's universal suite logs every bulk read and resend through the
	// standard logger (hundreds of lines); its failures are reported through
	// the test, so the lines say nothing a failure would not.
	log.SetOutput(io.Discard)
	pgtest.Main(m)
}

func TestDriverConformance(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	// The drivers of one test share their queues: memory is one process.
	shared, err := memdriver.Open(memdriver.DefaultConfig(), db.Pool)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, shared.Close()) })
	drivertest.Run(t, drivertest.Harness{
		Open: func(t *testing.T, namespace string) driver.Driver {
			d, err := shared.WithNamespace(namespace)
			require.NoError(t, err)
			return view{d}
		},
		Keyed:          true,
		KeepsLastError: true,
	})
}

// view leaves the shared queues open when the suite closes a driver.
type view struct{ *memdriver.Driver }

func (view) Close() error { return nil }

// Watermill's universal pub/sub suite against the driver's own publisher
// and subscriber, as the engine uses them. Every pub/sub the suite makes is
// a new subscriber on one driver's queues: they live as long as the
// process, which is what the driver persists across.
func TestUniversalPubSubSuite(t *testing.T) {
	t.Parallel()
	d, err := memdriver.Open(memdriver.DefaultConfig(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:      false,
		ExactlyOnceDelivery: true,
		GuaranteedOrder:     true,
		// Subscribers of one topic compete for its messages.
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		sub, err := d.Subscriber(driver.Poll, 1)
		require.NoError(t, err)
		return d.Publisher(), sub
	}, nil)
}
