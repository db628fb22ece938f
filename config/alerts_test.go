package config_test

import (
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
)

func TestAlertSettingsAreReadFromTheEnvironment(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(map[string]string{
		"RACEFLOW_ALERT_PRICE_MINUTES": "15", "RACEFLOW_ALERT_PRICE_POINTS": "7.5", "RACEFLOW_ALERT_LATE_MIN_CENTS": "250000",
		"RACEFLOW_ALERT_SURGE_PERCENT": "35", "RACEFLOW_ALERT_WEBHOOK_URL": "https://hooks.example.com/T0/B0/s3cretTOKEN",
	}))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	want := config.DefaultAlertRules()
	want.PriceMinutes, want.PricePoints, want.LateMinCents, want.SurgePercent = 15, 7.5, 250_000, 35
	require.Equal(t, want, c.Alerts)
	require.Equal(t, "https://hooks.example.com/T0/B0/s3cretTOKEN", c.AlertWebhookURL)
	require.NotContains(t, c.String(), "s3cretTOKEN", "the webhook's secret path never reaches a log")
	require.Contains(t, c.String(), "alert_webhook_url=https://hooks.example.com/xxxxx")
}

func TestBadAlertSettingsNameTheirVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, variable, value string
	}{
		{"window of no minutes", "RACEFLOW_ALERT_PRICE_MINUTES", "0"},
		{"window beyond an hour", "RACEFLOW_ALERT_LATE_MINUTES", "61"},
		{"no move", "RACEFLOW_ALERT_PRICE_POINTS", "0"},
		{"not a number", "RACEFLOW_ALERT_PRICE_POINTS", "NaN"},
		{"negative relative", "RACEFLOW_ALERT_PRICE_RELATIVE", "-25"},
		{"floor above 100", "RACEFLOW_ALERT_PRICE_RELATIVE_FLOOR", "101"},
		{"ratio of zero", "RACEFLOW_ALERT_LATE_RATIO", "0"},
		{"negative cents", "RACEFLOW_ALERT_LATE_MIN_CENTS", "-1"},
		{"surge of zero", "RACEFLOW_ALERT_SURGE_PERCENT", "0"},
		{"more than $10M", "RACEFLOW_ALERT_SURGE_MIN_CENTS", "1000000001"},
		{"webhook without scheme", "RACEFLOW_ALERT_WEBHOOK_URL", "hooks.example.com/x"},
		{"webhook of another scheme", "RACEFLOW_ALERT_WEBHOOK_URL", "ftp://hooks.example.com/x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.Load(env(map[string]string{tc.variable: tc.value}))
			require.NoError(t, err)
			err = c.Validate()
			var fe *config.FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tc.variable, fe.Var)
		})
	}
	_, err := config.Load(env(map[string]string{"RACEFLOW_ALERT_LATE_RATIO": "twice"}))
	require.ErrorContains(t, err, "RACEFLOW_ALERT_LATE_RATIO")
}

func TestAlertFlagsOverrideTheEnvironmentAndHideTheWebhooksSecret(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(map[string]string{"RACEFLOW_ALERT_WEBHOOK_URL": "https://hooks.example.com/s3cretTOKEN",
		"RACEFLOW_ALERT_LATE_RATIO": "3"}))
	require.NoError(t, err)
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	c.BindFlags(fs, config.FlagAlerts)
	require.NotContains(t, fs.FlagUsages(), "s3cretTOKEN")
	require.Equal(t, "3", fs.Lookup("alert-late-ratio").DefValue, "defaults come from the environment")
	require.NoError(t, fs.Parse([]string{"--alert-surge-percent", "40", "--alert-late-min-cents", "5000"}))
	require.Equal(t, 40.0, c.Alerts.SurgePercent)
	require.Equal(t, 5000, c.Alerts.LateMinCents)
	require.Equal(t, 3.0, c.Alerts.LateRatio)

	require.NoError(t, fs.Parse([]string{"--alert-price-points", "0"}))
	err = c.CheckFlags(fs)
	require.ErrorContains(t, err, "--alert-price-points")
	require.True(t, config.FromFlag(err))
}

func TestRedactURLKeepsOnlySchemeAndHost(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                                    "",
		"https://hooks.example.com":           "https://hooks.example.com",
		"https://hooks.example.com/T0/B0/abc": "https://hooks.example.com/xxxxx",
		"http://u:pw@hooks.example.com:8080/?k=1": "http://hooks.example.com:8080/xxxxx",
		"not a url": "xxxxx",
	} {
		require.Equal(t, want, config.RedactURL(in), in)
	}
}
