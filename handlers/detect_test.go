package handlers_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/stages/alerts"
	"github.com/raceflow/raceflow/stages/detect"
)

func TestAnAlertIsTheSameMessageHoweverOftenItIsPublished(t *testing.T) {
	t.Parallel()
	a := alerts.Alert{RaceID: "r1", EntrantID: "e1", Kind: alerts.KindSteamer, Bucket: 3, FiredAt: time.Unix(1752717420, 0).UTC()}
	f := detect.Fired{Alert: a, ID: a.ID(), Summary: "Te Rapa R3 #4 Sky Lark steamer"}
	poll, err := handlers.NewPollMessage(handlers.PollRequest{RaceID: "r1", PollID: "p1"}, false)
	require.NoError(t, err)
	m1, err := handlers.AlertMessages(poll, []detect.Fired{f})
	require.NoError(t, err)
	again, err := handlers.NewPollMessage(handlers.PollRequest{RaceID: "r1", PollID: "p1"}, false)
	require.NoError(t, err)
	m2, err := handlers.AlertMessages(again, []detect.Fired{f})
	require.NoError(t, err)
	require.Equal(t, m1[0].UUID, m2[0].UUID, "a republished alert keeps its message id, so a backend drops it")
	require.Equal(t, a.ID(), m1[0].Metadata.Get(handlers.KeyAlertID))
	require.Equal(t, "r1", m1[0].Metadata.Get(handlers.KeyRaceID), "the poll's metadata travels with it")
	back, err := handlers.DecodeAlert(m1[0])
	require.NoError(t, err)
	require.Equal(t, f, back)
}

func TestAnAlertWithoutItsIDIsRefused(t *testing.T) {
	t.Parallel()
	poll, err := handlers.NewPollMessage(handlers.PollRequest{RaceID: "r1", PollID: "p1"}, false)
	require.NoError(t, err)
	msgs, err := handlers.AlertMessages(poll, []detect.Fired{{Alert: alerts.Alert{RaceID: "r1"}}})
	require.NoError(t, err)
	_, err = handlers.DecodeAlert(msgs[0])
	require.ErrorContains(t, err, "no id")
	msgs[0].Payload = []byte("{")
	_, err = handlers.DecodeAlert(msgs[0])
	require.Error(t, err)
}
