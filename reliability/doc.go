// Package reliability is raceflow's fault-injection suite. Its tests run the
// real `raceflow run` binary as a subprocess against a simulated NZ TAB API
// and a PostgreSQL database, inject faults (kill -9, a database restart,
// terminated backends, SIGTERM under load, a starved connection pool, a
// blocking transaction) and then check, with an oracle over the database,
// that every requested poll was processed exactly once: none lost, none
// duplicated, no partial writes. docs/RELIABILITY.md records what they
// measure.
//
// The package has no non-test code beyond this comment. Long variants run
// with -reliability.long or RACEFLOW_LONG_TESTS=1; -reliability.seed
// replays a fault schedule.
package reliability
