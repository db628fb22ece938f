package config_test

import (
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/raceflow/raceflow/config"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultsAreValid(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(nil))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, config.DefaultAPIURL, c.APIURL)
	require.Equal(t, config.BackendPostgres, c.Backend)
	require.Equal(t, 4, c.Shards)
	require.Equal(t, config.DefaultWriteGroup, c.WriteGroup)
	require.Equal(t, 7*24*time.Hour, c.Retention)
}

func TestValidateNamesTheBadVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string
	}{
		{"unknown pubsub", map[string]string{"RACEFLOW_PUBSUB": "kafka"}, "RACEFLOW_PUBSUB"},
		{"api url without scheme", map[string]string{"NZTAB_API_URL": "api.tab.co.nz"}, "NZTAB_API_URL"},
		{"from is not an email", map[string]string{"NZTAB_FROM_EMAIL": "nobody"}, "NZTAB_FROM_EMAIL"},
		{"database url garbage", map[string]string{"DATABASE_URL": "mysql:x"}, "DATABASE_URL"},
		{"zero shards", map[string]string{"RACEFLOW_SHARDS": "0"}, "RACEFLOW_SHARDS"},
		{"zero write concurrency", map[string]string{"RACEFLOW_WRITE_CONCURRENCY": "0"}, "RACEFLOW_WRITE_CONCURRENCY"},
		{"write concurrency beyond its bound", map[string]string{"RACEFLOW_WRITE_CONCURRENCY": "65"}, "RACEFLOW_WRITE_CONCURRENCY"},
		{"zero write group", map[string]string{"RACEFLOW_WRITE_GROUP": "0"}, "RACEFLOW_WRITE_GROUP"},
		{"write group beyond its bound", map[string]string{"RACEFLOW_WRITE_GROUP": "257"}, "RACEFLOW_WRITE_GROUP"},
		{"retention too short", map[string]string{"RACEFLOW_RETENTION": "1m"}, "RACEFLOW_RETENTION"},
		{"retention too long", map[string]string{"RACEFLOW_RETENTION": "367d"}, "RACEFLOW_RETENTION"},
		{"history retention too short", map[string]string{"RACEFLOW_HISTORY_RETENTION": "23h"}, "RACEFLOW_HISTORY_RETENTION"},
		{"history retention too long", map[string]string{"RACEFLOW_HISTORY_RETENTION": "3661d"}, "RACEFLOW_HISTORY_RETENTION"},
		{"log level", map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{"http addr without port", map[string]string{"RACEFLOW_HTTP_ADDR": "localhost"}, "RACEFLOW_HTTP_ADDR"},
		{"nats url without host", map[string]string{"RACEFLOW_PUBSUB": "nats", "NATS_URL": "nats://"}, "NATS_URL"},
		{"nats ack wait too short", map[string]string{"RACEFLOW_PUBSUB": "nats", "RACEFLOW_NATS_ACK_WAIT": "10ms"}, "RACEFLOW_NATS_ACK_WAIT"},
		{"namespace with a dot", map[string]string{"RACEFLOW_NAMESPACE": "race.day"}, "RACEFLOW_NAMESPACE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.Load(env(tc.env))
			require.NoError(t, err)
			err = c.Validate()
			var fe *config.FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tc.wantVar, fe.Var)
			require.Contains(t, err.Error(), tc.wantVar)
		})
	}
}

func TestLoadReportsUnparsableValuesByName(t *testing.T) {
	t.Parallel()
	_, err := config.Load(env(map[string]string{"RACEFLOW_SHARDS": "four", "NZTAB_TIMEOUT": "soon"}))
	var fe *config.FieldError
	require.ErrorAs(t, err, &fe)
	require.ErrorContains(t, err, "RACEFLOW_SHARDS")
	require.ErrorContains(t, err, "NZTAB_TIMEOUT")
}

func TestParseDurationRejectsWhatADurationCannotHold(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"7d", 7 * 24 * time.Hour, ""},
		{"0d", 0, ""},
		{"90m", 90 * time.Minute, ""},
		{"106751d", 106751 * 24 * time.Hour, ""},
		{"106752d", 0, "out of range"},
		{"213505d", 0, "out of range"},
		{"213504d", 0, "out of range"},
		{"99999999999999999999d", 0, "out of range"},
		{"-1d", 0, "invalid duration"},
		{"1.5d", 0, "invalid duration"},
		{"d", 0, "invalid duration"},
		{"3000000h", 0, "invalid duration"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := config.ParseDuration(tc.in)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestLoadReportsAnOverflowingRetentionInsteadOfWrappingIt(t *testing.T) {
	t.Parallel()
	_, err := config.Load(env(map[string]string{"RACEFLOW_RETENTION": "213505d"}))
	var fe *config.FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "RACEFLOW_RETENTION", fe.Var)
	require.ErrorContains(t, err, "out of range")
}

func TestFlagsOverrideEnvironment(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(map[string]string{"RACEFLOW_SHARDS": "8", "RACEFLOW_PUBSUB": "memory"}))
	require.NoError(t, err)
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	c.BindFlags(fs, config.FlagShards|config.FlagBackend)
	require.NoError(t, fs.Parse([]string{"--shards", "2"}))
	require.Equal(t, 2, c.Shards, "flag wins")
	require.Equal(t, config.BackendMemory, c.Backend, "environment kept where no flag is given")
}

func TestSecretsAreRedacted(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, notWant string }{
		{"postgres://alice:s3cret@db:5432/race", "s3cret"},
		{"postgres://alice@db/race?password=s3cret", "s3cret"},
		{"host=db user=alice password=s3cret dbname=race", "s3cret"},
		{"host=db password='s3 cret' dbname=race", "s3 cret"},
	}
	for _, tc := range tests {
		require.NotContains(t, config.RedactDSN(tc.in), tc.notWant, tc.in)
		c := config.Default()
		c.DatabaseURL = tc.in
		require.NotContains(t, c.String(), tc.notWant)
	}
	c := config.Default()
	c.DatabaseURL = "postgres://alice:s3cret@db:notaport/race"
	err := c.Validate()
	require.ErrorContains(t, err, "DATABASE_URL")
	require.NotContains(t, err.Error(), "s3cret", "a bad URL is reported without its password")
}

func TestBindFlagsBindsOnlyTheSelectedGroups(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		which config.Flags
		want  []string
	}{
		{"database only", config.FlagDatabase, []string{"database-url"}},
		{"backend and namespace", config.FlagBackend | config.FlagNamespace, []string{"backend", "namespace", "nats-url"}},
		{"api and log", config.FlagAPI | config.FlagLog, []string{"api-url", "log-format", "log-level"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := config.Default()
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			c.BindFlags(fs, tc.which)
			var got []string
			fs.VisitAll(func(f *pflag.Flag) { got = append(got, f.Name) })
			require.Equal(t, tc.want, got)
		})
	}
}

func TestFlagDefaultsComeFromTheEnvironmentWithSecretsRedacted(t *testing.T) {
	t.Parallel()
	c, err := config.Load(env(map[string]string{
		"DATABASE_URL": "postgres://root:s3cretPW@db:5432/race", "NATS_URL": "nats://u:n4tsPW@nats:4222", "RACEFLOW_SHARDS": "8",
	}))
	require.NoError(t, err)
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	c.BindFlags(fs, config.FlagDatabase|config.FlagBackend|config.FlagShards)
	help := fs.FlagUsages()
	require.NotContains(t, help, "s3cretPW")
	require.NotContains(t, help, "n4tsPW")
	require.Contains(t, help, "root:xxxxx@db:5432/race")
	require.Contains(t, help, "(env DATABASE_URL)")
	require.Equal(t, "8", fs.Lookup("shards").DefValue)
	require.NoError(t, fs.Parse(nil))
	require.Equal(t, "postgres://root:s3cretPW@db:5432/race", c.DatabaseURL, "the value itself is kept")
}

func TestCheckFlagsNamesTheFlagThatSetABadValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		want     string
		fromFlag bool
	}{
		{"flag", nil, []string{"--shards", "0"}, "--shards=\"0\": must be between 1 and 256", true},
		{"environment", map[string]string{"RACEFLOW_SHARDS": "0"}, nil, "RACEFLOW_SHARDS=\"0\"", false},
		{"flag over a good environment", map[string]string{"RACEFLOW_PUBSUB": "nats"}, []string{"--backend", "kafka"}, "--backend=\"kafka\"", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := config.Load(env(tc.env))
			require.NoError(t, err)
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			c.BindFlags(fs, config.FlagShards|config.FlagBackend)
			require.NoError(t, fs.Parse(tc.args))
			err = c.CheckFlags(fs)
			require.ErrorContains(t, err, tc.want)
			require.Equal(t, tc.fromFlag, config.FromFlag(err))
		})
	}
}

func TestABadDatabaseURLSaysWhatIsWrongWithoutThePassword(t *testing.T) {
	t.Parallel()
	tests := []struct{ dsn, want string }{
		{"postgres://root:s3cretPW@db/race?sslmode=bogus", "sslmode is invalid"},
		{"postgres://root:s3cretPW@db:notaport/race", "root:xxxxx@db:notaport/race"},
		{"host=db password=s3cretPW sslmode=nope", "sslmode is invalid"},
	}
	for _, tc := range tests {
		c := config.Default()
		c.DatabaseURL = tc.dsn
		err := c.Validate()
		require.ErrorContains(t, err, "DATABASE_URL", tc.dsn)
		require.ErrorContains(t, err, tc.want, tc.dsn)
		require.NotContains(t, err.Error(), "s3cretPW", tc.dsn)
	}
}
