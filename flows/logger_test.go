package flows_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows"
)

func TestWatermillLogLinesLandOneLevelLowerAndCarryTheirFields(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name  string
		level logrus.Level
		call  func(watermill.LoggerAdapter)
		want  string // "" when nothing may be written
	}{
		{"error at info", logrus.InfoLevel, func(a watermill.LoggerAdapter) { a.Error("failed", boom, watermill.LogFields{"topic": "t"}) },
			`level=error msg=failed error=boom topic=t`},
		{"shutdown error at info", logrus.InfoLevel, func(a watermill.LoggerAdapter) {
			a.Error("cut short", fmt.Errorf("poll: %w", context.Canceled), nil)
		}, ""},
		{"shutdown error at debug", logrus.DebugLevel, func(a watermill.LoggerAdapter) {
			a.Error("cut short", fmt.Errorf("poll: %w", context.Canceled), nil)
		}, `level=debug msg="cut short" error="poll: context canceled"`},
		{"info at info", logrus.InfoLevel, func(a watermill.LoggerAdapter) { a.Info("handler started", nil) }, ""},
		{"info at debug", logrus.DebugLevel, func(a watermill.LoggerAdapter) { a.Info("handler started", watermill.LogFields{"n": 1}) },
			`level=debug msg="handler started" n=1`},
		{"trace at debug", logrus.DebugLevel, func(a watermill.LoggerAdapter) { a.Trace("message handled", nil) }, ""},
		{"trace at trace", logrus.TraceLevel, func(a watermill.LoggerAdapter) { a.Trace("message handled", nil) },
			`level=trace msg="message handled"`},
		{"fields of With at info", logrus.InfoLevel, func(a watermill.LoggerAdapter) {
			a.With(watermill.LogFields{"router": "r"}).Error("failed", boom, nil)
		}, `level=error msg=failed error=boom router=r`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			l := logrus.New()
			l.SetOutput(&out)
			l.SetLevel(tc.level)
			l.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true, DisableColors: true})
			tc.call(flows.NewLogger(l))
			if tc.want == "" {
				require.Empty(t, out.String())
				return
			}
			require.Equal(t, tc.want+"\n", out.String())
		})
	}
}

func TestWatermillTraceAllocatesNothingWhenTraceIsOff(t *testing.T) {
	l := logrus.New()
	l.SetLevel(logrus.InfoLevel)
	for name, fl := range map[string]logrus.FieldLogger{"logger": l, "entry": l.WithField("engine", "e")} {
		t.Run(name, func(t *testing.T) {
			a := flows.NewLogger(fl)
			fields := watermill.LogFields{"message_uuid": "u", "topic": "race.fetched"}
			allocs := testing.AllocsPerRun(100, func() { a.Trace("message handled", fields) })
			require.Zero(t, allocs, "a Trace line nobody writes still built an entry")
		})
	}
}
