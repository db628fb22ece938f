// Package flows wires the stages into a running dataflow: Watermill routers
// over a message backend (a driver, chosen by name in drivers.go), sharded
// topics, the middleware around every handler, and the entry points that
// drive the flow: ProcessRace, and the Service that `raceflow run` runs.
package flows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/flows/driver/natsdriver"
	"github.com/raceflow/raceflow/flows/driver/pgdriver"
	"github.com/raceflow/raceflow/flows/notify"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/stages/alerts"
	"github.com/raceflow/raceflow/stages/write"
)

// Config shapes the flow. Start from DefaultConfig.
type Config struct {
	// Backend names the driver (RACEFLOW_PUBSUB): see drivers.go.
	Backend string
	// Shards splits each stage's topic so races run in parallel while one
	// race's polls stay in order: a race always maps to the same shard.
	Shards int
	// Namespace prefixes every topic, so separate flows can share a database.
	Namespace string
	// FetchConcurrency is how many fetches run at once, shared by the poll
	// shards (never two of one race), whatever the shard count: a slow API
	// must not leave the flow waiting on Shards fetches, and a shard that
	// holds more of the races may use what the others leave. A driver that
	// cannot keep a race's order with several messages of a topic out
	// (nats) fetches one at a time per shard.
	FetchConcurrency int
	// WriteConcurrency is how many polls of different races each shard's
	// write handler (which transforms, then writes) works on at once, each
	// race's polls still in order: races that share a shard need not wait
	// for each other's writes. A driver that cannot keep a race's order
	// with several messages of a topic out (nats) writes one at a time.
	WriteConcurrency int
	// WriteGroup is how the write handlers of every shard share
	// transactions between the polls they write at the same time
	// (handlers.WriteGroups; its Observe is the engine's).
	WriteGroup handlers.WriteGroupConfig
	// AckDeadline bounds one message's handling, retries included.
	AckDeadline time.Duration
	// MaxDeliveries bounds how often a message is handed out: one delivered
	// more often (its handling crashed the process, lost its connection, or
	// was cut short each time) goes to the poison queue with its last error
	// instead of being handled again.
	MaxDeliveries int
	// Retry applies to transient write failures (fetch retries live in the
	// API client).
	Retry RetryConfig
	// SlowPoll logs a warning for polls slower than this end to end.
	SlowPoll time.Duration
	// CloseTimeout bounds how long Close waits for in-flight handlers.
	CloseTimeout time.Duration
	// Retention is how long the stored topic keeps raw fetches for replay
	// (RACEFLOW_RETENTION), whichever way the backend expires them.
	Retention time.Duration
	// Postgres configures the postgres driver; its Namespace and
	// AckDeadline are the flow's.
	Postgres pgdriver.Config
	// NATS configures the nats driver; its Namespace, AckDeadline,
	// CloseTimeout and StoredRetention are the flow's.
	NATS natsdriver.Config
	// Alerts are the alert rules the detect stage judges each poll with
	// (RACEFLOW_ALERT_*).
	Alerts alerts.Config
	// Notify delivers the alerts to the webhook (flows/notify); without a
	// URL the alerts topic is drained and the alerts table keeps them.
	Notify notify.Config
}

// RetryConfig is exponential backoff for transient handler errors.
type RetryConfig struct {
	MaxRetries      int
	InitialInterval time.Duration
	MaxInterval     time.Duration
	Multiplier      float64
}

// DefaultConfig is a PostgreSQL-backed flow with 4 shards.
func DefaultConfig() Config {
	return Config{
		Backend:          config.BackendPostgres,
		Shards:           config.DefaultShards,
		Namespace:        config.DefaultNamespace,
		FetchConcurrency: config.DefaultFetchConcurrency,
		WriteConcurrency: config.DefaultWriteConcurrency,
		WriteGroup: handlers.WriteGroupConfig{MaxPolls: config.DefaultWriteGroup, InFlight: config.DefaultWriteGroupsInFlight,
			MaxWait: config.DefaultWriteGroupWait, MaxLockWait: config.DefaultWriteGroupLockWait},
		AckDeadline:   60 * time.Second,
		MaxDeliveries: 5,
		Retry:         RetryConfig{MaxRetries: 3, InitialInterval: 100 * time.Millisecond, MaxInterval: 2 * time.Second, Multiplier: 2},
		SlowPoll:      2 * time.Second,
		CloseTimeout:  30 * time.Second,
		Retention:     config.DefaultRetention,
		Postgres:      pgdriver.DefaultConfig(),
		NATS:          natsdriver.DefaultConfig(),
		Alerts:        alerts.DefaultConfig(),
		Notify:        notify.DefaultConfig(),
	}
}

// Validate checks the configuration; the driver's own settings are checked
// when it is opened.
func (c Config) Validate() error {
	var errs []error
	if !slices.Contains(config.Backends(), c.Backend) {
		errs = append(errs, fmt.Errorf("flows: backend %q must be one of %s", c.Backend, strings.Join(config.Backends(), ", ")))
	}
	if c.Shards < 1 || c.Shards > 256 {
		errs = append(errs, fmt.Errorf("flows: shards %d must be within 1..256", c.Shards))
	}
	if c.FetchConcurrency < 1 || c.FetchConcurrency > 1024 {
		errs = append(errs, fmt.Errorf("flows: fetch concurrency %d must be within 1..1024", c.FetchConcurrency))
	}
	if c.WriteConcurrency < 1 || c.WriteConcurrency > config.MaxWriteConcurrency {
		errs = append(errs, fmt.Errorf("flows: write concurrency %d must be within 1..%d", c.WriteConcurrency, config.MaxWriteConcurrency))
	}
	if err := c.WriteGroup.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("flows: %w", err))
	}
	if err := config.ValidNamespace(c.Namespace); err != nil {
		errs = append(errs, fmt.Errorf("flows: %w", err))
	}
	if c.AckDeadline <= 0 {
		errs = append(errs, errors.New("flows: ack deadline must be positive"))
	}
	if c.MaxDeliveries < 1 {
		errs = append(errs, errors.New("flows: max deliveries must be at least 1"))
	}
	if c.Retention <= 0 {
		errs = append(errs, errors.New("flows: retention must be positive"))
	}
	if c.Retry.MaxRetries < 0 || c.Retry.Multiplier < 1 {
		errs = append(errs, errors.New("flows: retry needs MaxRetries ≥ 0 and Multiplier ≥ 1"))
	}
	errs = append(errs, c.validateAlerts())
	return errors.Join(errs...)
}

// Deps are what the flow runs on.
type Deps struct {
	Pool     *pgxpool.Pool      // the database of record (and the postgres driver's)
	Fetcher  handlers.Fetcher   // the NZ TAB API
	Logger   logrus.FieldLogger // required
	Registry prometheus.Registerer
	Metrics  *Metrics // raceflow's own metrics; nil: the middleware adds nothing
	// Now is the flow's clock, which poll ids read in (the demo's is
	// simulated); nil is the wall clock. Latencies are always measured on
	// the real clock.
	Now func() time.Time
}

// Engine is a running (or runnable) flow.
type Engine struct {
	cfg    Config
	deps   Deps
	drv    driver.Driver
	router *message.Router
	pub    message.Publisher
	log    logrus.FieldLogger

	// instance tells this engine's results from other instances' when
	// results fan out to every instance.
	instance string

	mu           sync.Mutex
	waiters      map[string]chan handlers.ProcessResult
	observers    []func(handlers.ProcessResult)
	ownObservers []func(handlers.ProcessResult)

	outputPub message.Publisher // publishes stage outputs inside the tracked region
	notifier  *notify.Notifier  // delivers the alerts (alerts.go)
	results   *earlySubscriber  // the results topics' subscriber (results.go)
	ends      *write.Ends       // where the races' history series end, for every write

	flight   sync.Mutex // guards the fields below (see drain.go)
	inFlight int
	closing  bool
	idle     chan struct{}
	ran      bool // Run was called
	released bool // closed without running
}

// New opens the configured driver and builds the routers; nothing runs
// until Run. The engine owns the driver: Run's end or Close releases it.
func New(cfg Config, deps Deps) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Pool == nil || deps.Fetcher == nil || deps.Logger == nil {
		return nil, errors.New("flows: Deps needs Pool, Fetcher and Logger")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	drv, err := OpenDriver(cfg, deps.Pool, deps.Logger)
	if err != nil {
		return nil, err
	}
	e, err := newEngine(cfg, deps, drv)
	if err != nil {
		return nil, errors.Join(err, drv.Close())
	}
	return e, nil
}

func newEngine(cfg Config, deps Deps, drv driver.Driver) (*Engine, error) {
	wlog := NewLogger(deps.Logger)
	e := &Engine{cfg: cfg, deps: deps, drv: drv, log: deps.Logger, waiters: map[string]chan handlers.ProcessResult{},
		instance: watermill.NewShortUUID(), pub: drv.Publisher(), outputPub: drv.HandlerPublisher()}

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, wlog)
	if err != nil {
		return nil, fmt.Errorf("flows: router: %w", err)
	}
	e.router = router
	if deps.Registry != nil {
		metrics.NewPrometheusMetricsBuilder(deps.Registry, "raceflow", "watermill").AddPrometheusRouterMetrics(router)
	}
	poison, err := middleware.PoisonQueueWithFilter(drv.HandlerPublisher(), e.topic(driver.Poison, -1), shouldPoison)
	if err != nil {
		return nil, fmt.Errorf("flows: poison queue: %w", err)
	}
	// First added runs outermost. track counts handlers in flight for a
	// safe shutdown (drain.go), so the driver's own middleware (nats:
	// keep-alive and ack) finishes inside it; the metrics time everything;
	// publishOutputs publishes inside that tracked region; timing stamps the
	// stage into the outputs; poison sits outside outcome and retry, so
	// transient errors are retried first and failures get a result. (Retry
	// added before poison would never retry.)
	router.AddMiddleware(
		e.track,
		drv.Middleware(),
		deps.Metrics.Middleware,
		e.publishOutputs,
		e.timing,
		middleware.CorrelationID,
		poison,
		e.outcome,
		e.bound,
		middleware.Retry{
			MaxRetries:          cfg.Retry.MaxRetries,
			InitialInterval:     cfg.Retry.InitialInterval,
			MaxInterval:         cfg.Retry.MaxInterval,
			Multiplier:          cfg.Retry.Multiplier,
			RandomizationFactor: 0.2,
			ShouldRetry: func(p middleware.RetryParams) bool {
				return handlers.Retryable(p.Err) && !errors.Is(p.Err, driver.ErrDeliveryLost)
			},
			Logger: wlog,
		}.Middleware,
		deps.Metrics.CountRetries,
		middleware.Recoverer,
	)

	subs := map[driver.Kind]message.Subscriber{}
	for _, kind := range driver.StageKinds() {
		parallel := 1
		switch kind {
		case driver.Poll:
			// Any shard may hold every fetch; fetchLimit bounds them all.
			parallel = cfg.FetchConcurrency
		case driver.Fetched:
			parallel = cfg.WriteConcurrency
		}
		sub, err := drv.Subscriber(kind, parallel)
		if err != nil {
			return nil, fmt.Errorf("flows: %s subscriber: %w", kind, err)
		}
		subs[kind] = drainingSubscriber{sub, e}
	}
	e.results = &earlySubscriber{Subscriber: subs[driver.Processed]}
	subs[driver.Processed] = e.results
	// The fetch hands the event it decoded to the write of the same poll.
	handover := handlers.NewHandover(4*cfg.FetchConcurrency + 64)
	// One memory of the races' series ends for every write of the engine,
	// grouped or alone: a race's polls may take either.
	e.ends = write.NewEnds(write.DefaultEndsRaces)
	groupCfg := cfg.WriteGroup
	groupCfg.Ends = e.ends
	groupCfg.Observe = func(polls int, fellBack error) {
		if fellBack != nil {
			e.log.WithError(fellBack).WithField("polls", polls).Debug("a write group failed; its polls write alone")
		}
		deps.Metrics.WriteTransaction(polls, fellBack)
	}
	groups, err := handlers.NewWriteGroups(drv.BeginWriteGroup, groupCfg)
	if err != nil {
		return nil, fmt.Errorf("flows: %w", err)
	}
	fetcher := newFetchLimit(deps.Fetcher, cfg.FetchConcurrency)
	for shard := 0; shard < cfg.Shards; shard++ {
		router.AddHandler(handlerName(handlers.StageFetch, shard), e.topic(driver.Poll, shard), subs[driver.Poll],
			e.topic(driver.Fetched, shard), drv.HandlerPublisher(), handlers.Fetch(fetcher, handover))
		// The write handler runs the transform first (handlers.Write).
		router.AddHandler(handlerName(handlers.StageWrite, shard), e.topic(driver.Fetched, shard), subs[driver.Fetched],
			e.topic(driver.Written, shard), drv.HandlerPublisher(), handlers.Write(drv.BeginWrite, handover, groups, e.ends))
		router.AddHandler(handlerName(handlers.StageDetect, shard), e.topic(driver.Written, shard), subs[driver.Written],
			e.topic(driver.Processed, shard), drv.HandlerPublisher(),
			handlers.Detect(drv.BeginWrite, cfg.Alerts, driver.AlertsTopic(cfg.Namespace).String(), drv.HandlerPublisher()))
		router.AddConsumerHandler(handlerName("results", shard), e.topic(driver.Processed, shard), subs[driver.Processed], e.deliver)
	}
	if err := e.newNotifier(); err != nil {
		return nil, err
	}
	return e, nil
}

func handlerName(stage string, shard int) string { return fmt.Sprintf("%s.%d", stage, shard) }

func stageOfHandler(name string) string {
	stage, _, _ := strings.Cut(name, ".")
	return stage
}

// topic names a topic of this flow; shard < 0 is the unsharded poison topic.
func (e *Engine) topic(kind driver.Kind, shard int) string {
	if shard < 0 {
		return driver.PoisonTopic(e.cfg.Namespace).String()
	}
	return driver.ShardTopic(e.cfg.Namespace, kind, shard).String()
}

// Topics lists every topic of the flow.
func (e *Engine) Topics() []driver.Topic { return driver.Topics(e.cfg.Namespace, e.cfg.Shards) }

// Driver is the engine's message backend: its stored topic, poison queue,
// retention and queue statistics.
func (e *Engine) Driver() driver.Driver { return e.drv }

// SeriesEnds counts where the engine's writes found the ends of the
// history series they appended to: remembered from the race's previous
// write in this process, or looked up (write.Ends).
func (e *Engine) SeriesEnds() write.EndsStats { return e.ends.Stats() }

// Run initialises the topics and runs the routers until ctx ends or Close.
// When ctx ends the engine closes gracefully: running handlers finish,
// anything not yet handled is redelivered on the next start.
func (e *Engine) Run(ctx context.Context) error {
	e.flight.Lock()
	if e.released {
		e.flight.Unlock()
		return errEngineReleased
	}
	e.ran = true
	e.flight.Unlock()
	if err := e.drv.Init(ctx, e.Topics()); err != nil {
		return errors.Join(err, e.drv.Close())
	}
	if err := e.addLegacyHandlers(ctx); err != nil {
		return errors.Join(err, e.drv.Close())
	}
	var results []string
	for shard := 0; shard < e.cfg.Shards; shard++ {
		results = append(results, e.topic(driver.Processed, shard))
	}
	if err := e.results.subscribeEarly(context.WithoutCancel(ctx), results); err != nil {
		return errors.Join(err, e.drv.Close())
	}
	// The router's own context would cancel subscriptions under running
	// handlers; close through Close instead (drain.go).
	stop := context.AfterFunc(ctx, func() { _ = e.router.Close() })
	defer stop()
	stopNotifier := e.notifier.Start(context.WithoutCancel(ctx))
	err := e.router.Run(context.WithoutCancel(ctx))
	if err == nil {
		err = ctx.Err()
	}
	return errors.Join(err, stopNotifier(), e.results.closeUnclaimed(), e.drv.Close())
}

// Running is closed once every handler runs.
func (e *Engine) Running() chan struct{} { return e.router.Running() }

// Close stops the routers; in-flight messages are finished or redelivered.
// An engine that never ran (one used only to publish polls) releases its
// driver instead.
func (e *Engine) Close() error {
	e.flight.Lock()
	if !e.ran {
		if e.released {
			e.flight.Unlock()
			return nil
		}
		e.released = true
		e.flight.Unlock()
		return e.drv.Close()
	}
	e.flight.Unlock()
	return e.router.Close()
}

// errEngineReleased: Run after Close of an engine that never ran.
var errEngineReleased = errors.New("flows: engine closed before it ran")

// OnResult registers fn to see every poll result this engine receives (the
// scheduler). Where results fan out, every instance receives every result.
// It must not block.
func (e *Engine) OnResult(fn func(handlers.ProcessResult)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.observers = append(e.observers, fn)
}

// OnOwnResult registers fn to see the results of the polls this engine
// worked on last (metrics: summed over instances, each poll counts once).
// It must not block.
func (e *Engine) OnOwnResult(fn func(handlers.ProcessResult)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ownObservers = append(e.ownObservers, fn)
}

// keyProducer marks a result with the engine instance that produced it.
const keyProducer = "producer"

// ownResult reports whether this engine produced the result in msg.
func (e *Engine) ownResult(msg *message.Message) bool {
	return !e.drv.FansOutResults() || msg.Metadata.Get(keyProducer) == e.instance
}

// derivedUUID is the id of an output of the message with id parent: the
// same for every redelivery of parent, so a backend that deduplicates by id
// (JetStream) drops what a redone stage publishes again. Distinct per
// purpose.
func derivedUUID(parent, purpose string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("raceflow:"+parent+"/"+purpose)).String()
}
