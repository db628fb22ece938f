package flows_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/flows"
)

func TestAlertCountersAreExportedAtZeroBeforeAnyPoll(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	_, err := flows.NewMetrics(reg)
	require.NoError(t, err)
	f := gather(t, reg)
	type lbl = map[string]string
	for _, c := range []struct {
		metric string
		labels lbl
	}{
		{"raceflow_poisoned_messages_total", lbl{"stage": "fetch", "reason": "malformed_json"}},
		{"raceflow_poisoned_messages_total", lbl{"stage": "fetch", "reason": "validation"}},
		{"raceflow_poisoned_messages_total", lbl{"stage": "transform", "reason": "transform"}},
		{"raceflow_poisoned_messages_total", lbl{"stage": "write", "reason": "database"}},
		{"raceflow_poll_failures_total", lbl{"stage": "fetch", "kind": "unreachable", "status": "skipped"}},
		{"raceflow_poll_failures_total", lbl{"stage": "fetch", "kind": "not_found", "status": "skipped"}},
		{"raceflow_poll_failures_total", lbl{"stage": "write", "kind": "partition_missing", "status": "failed"}},
		{"raceflow_retries_total", lbl{"stage": "write", "reason": "database"}},
		{"raceflow_retries_total", lbl{"stage": "write", "reason": "commit"}},
		{"raceflow_polls_total", lbl{"status": "failed"}},
	} {
		mf, ok := f[c.metric]
		require.True(t, ok, "%s is not exported before the first poll", c.metric)
		found := false
		for _, m := range mf.GetMetric() {
			l := labelsOf(m)
			match := len(l) == len(c.labels)
			for k, v := range c.labels {
				match = match && l[k] == v
			}
			if match {
				found = true
				require.Zero(t, m.GetCounter().GetValue(), "%s%v", c.metric, c.labels)
			}
		}
		require.True(t, found, "%s%v has no series at 0", c.metric, c.labels)
	}
	require.Zero(t, f.sum("raceflow_poisoned_messages_total", nil), "nothing counted yet")
	// A skip is never poison, and only transient errors are retried.
	require.Zero(t, f.series("raceflow_poisoned_messages_total")-f.seriesWhere("raceflow_poll_failures_total", lbl{"status": "failed"}))
}

// seriesWhere counts the family's series whose labels include want.
func (f families) seriesWhere(name string, want map[string]string) int {
	n := 0
	if mf, ok := f[name]; ok {
		for _, m := range mf.GetMetric() {
			l := labelsOf(m)
			match := true
			for k, v := range want {
				match = match && l[k] == v
			}
			if match {
				n++
			}
		}
	}
	return n
}
