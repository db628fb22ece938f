// Package flows wires the stages into a running dataflow: Watermill routers
// over a pub/sub backend, sharded topics, middleware, and the entry points
// that drive it (ProcessRace, the scheduler, replay).
package flows

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
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

	"github.com/raceflow/raceflow/handlers"
)

// Backends.
const (
	BackendPostgres = "postgres"
	BackendMemory   = "memory"
	BackendNATS     = "nats"
)

// Config shapes the flow. Start from DefaultConfig.
type Config struct {
	Backend string
	// Shards splits each stage's topic so races run in parallel while one
	// race's polls stay in order: a race always maps to the same shard.
	Shards int
	// Namespace prefixes every topic, so separate flows can share a database.
	Namespace string
	// PollInterval is how long an idle subscription waits before asking
	// again; it bounds the latency each hop adds.
	PollInterval time.Duration
	// SubscribeBatchSize is how many messages one subscriber transaction
	// takes. 1 keeps hand-off latency lowest and redelivery after a crash at
	// one message per subscription.
	SubscribeBatchSize int
	// AckDeadline bounds one message's handling, retries included.
	AckDeadline time.Duration
	// Retry applies to transient write failures (fetch retries live in the
	// API client).
	Retry RetryConfig
	// SlowPoll logs a warning for polls slower than this end to end.
	SlowPoll time.Duration
	// CloseTimeout bounds how long Close waits for in-flight handlers.
	CloseTimeout time.Duration
	// NATS configures the nats backend.
	NATS NATSConfig
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
		Backend:            BackendPostgres,
		Shards:             4,
		Namespace:          "race",
		PollInterval:       10 * time.Millisecond,
		SubscribeBatchSize: 1,
		AckDeadline:        60 * time.Second,
		Retry:              RetryConfig{MaxRetries: 3, InitialInterval: 100 * time.Millisecond, MaxInterval: 2 * time.Second, Multiplier: 2},
		SlowPoll:           2 * time.Second,
		CloseTimeout:       30 * time.Second,
		NATS:               DefaultNATSConfig(),
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	switch c.Backend {
	case BackendPostgres, BackendMemory:
	case BackendNATS:
		errs = append(errs, c.NATS.Validate())
	default:
		errs = append(errs, fmt.Errorf("flows: backend %q must be %s, %s or %s", c.Backend, BackendPostgres, BackendMemory, BackendNATS))
	}
	if c.Shards < 1 || c.Shards > 256 {
		errs = append(errs, fmt.Errorf("flows: shards %d must be within 1..256", c.Shards))
	}
	if c.Namespace == "" || strings.ContainsFunc(c.Namespace, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) {
		errs = append(errs, fmt.Errorf("flows: namespace %q must be lower-case letters, digits, _ or -", c.Namespace))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, errors.New("flows: poll interval must be positive"))
	}
	if c.SubscribeBatchSize < 1 {
		errs = append(errs, errors.New("flows: subscribe batch size must be at least 1"))
	}
	if c.AckDeadline <= 0 {
		errs = append(errs, errors.New("flows: ack deadline must be positive"))
	}
	if c.Retry.MaxRetries < 0 || c.Retry.Multiplier < 1 {
		errs = append(errs, errors.New("flows: retry needs MaxRetries ≥ 0 and Multiplier ≥ 1"))
	}
	return errors.Join(errs...)
}

// Deps are what the flow runs on.
type Deps struct {
	Pool     *pgxpool.Pool      // the database of record (and the postgres backend)
	Fetcher  handlers.Fetcher   // the NZ TAB API
	Logger   logrus.FieldLogger // required
	Registry prometheus.Registerer
	Metrics  *Metrics // raceflow's own metrics; nil: the middleware adds nothing
	Now      func() time.Time
}

// Engine is a running (or runnable) flow.
type Engine struct {
	cfg     Config
	deps    Deps
	backend backend
	router  *message.Router
	pub     message.Publisher
	log     logrus.FieldLogger

	// instance tells this engine's results from other instances' when
	// results fan out to every instance.
	instance string

	mu           sync.Mutex
	waiters      map[string]chan handlers.ProcessResult
	observers    []func(handlers.ProcessResult)
	ownObservers []func(handlers.ProcessResult)

	outputPub message.Publisher // publishes stage outputs inside the tracked region

	flight   sync.Mutex // guards the fields below (see drain.go)
	inFlight int
	closing  bool
	idle     chan struct{}
	ran      bool // Run was called
	released bool // closed without running
}

// New builds the routers and topics; nothing runs until Run.
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
	wlog := NewLogger(deps.Logger)
	e := &Engine{cfg: cfg, deps: deps, log: deps.Logger, waiters: map[string]chan handlers.ProcessResult{},
		instance: watermill.NewShortUUID()}

	switch cfg.Backend {
	case BackendPostgres:
		b, err := newPostgresBackend(deps.Pool, cfg, wlog)
		if err != nil {
			return nil, err
		}
		e.backend = b
	case BackendNATS:
		b, err := newNATSBackend(deps.Pool, cfg, wlog)
		if err != nil {
			return nil, err
		}
		e.backend = b
	default:
		e.backend = newMemoryBackend(deps.Pool, wlog)
	}
	e.pub = e.backend.publisher()

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, wlog)
	if err != nil {
		return nil, fmt.Errorf("flows: router: %w", err)
	}
	e.router = router
	if deps.Registry != nil {
		metrics.NewPrometheusMetricsBuilder(deps.Registry, "raceflow", "watermill").AddPrometheusRouterMetrics(router)
	}
	poison, err := middleware.PoisonQueueWithFilter(e.backend.handlerPublisher(), e.topic(kindPoison, -1), shouldPoison)
	if err != nil {
		return nil, fmt.Errorf("flows: poison queue: %w", err)
	}
	// First added runs outermost (watermill-notes.md §0.7). track counts
	// handlers in flight for a safe shutdown (drain.go), so the backend's
	// own middleware (nats: keep-alive and ack) finishes inside it; the
	// metrics time everything; publishOutputs publishes inside that tracked
	// region; timing stamps the stage into the outputs; poison sits outside
	// outcome and retry, so transient errors are retried first and failures
	// get a result.
	router.AddMiddleware(
		e.track,
		e.backend.middleware(),
		deps.Metrics.Middleware,
		e.publishOutputs,
		e.timing,
		middleware.CorrelationID,
		poison,
		e.outcome,
		middleware.Retry{
			MaxRetries:          cfg.Retry.MaxRetries,
			InitialInterval:     cfg.Retry.InitialInterval,
			MaxInterval:         cfg.Retry.MaxInterval,
			Multiplier:          cfg.Retry.Multiplier,
			RandomizationFactor: 0.2,
			ShouldRetry: func(p middleware.RetryParams) bool {
				return handlers.Retryable(p.Err) && !errors.Is(p.Err, errTxLost)
			},
			Logger: wlog,
		}.Middleware,
		deps.Metrics.CountRetries,
		middleware.Recoverer,
	)

	sub := func(kind string) message.Subscriber { return drainingSubscriber{e.backend.subscriber(kind), e} }
	e.outputPub = e.backend.handlerPublisher()
	for shard := 0; shard < cfg.Shards; shard++ {
		router.AddHandler(handlerName(handlers.StageFetch, shard), e.topic(kindPoll, shard), sub(kindPoll),
			e.topic(kindFetched, shard), e.backend.handlerPublisher(), handlers.Fetch(deps.Fetcher))
		router.AddHandler(handlerName(handlers.StageTransform, shard), e.topic(kindFetched, shard), sub(kindFetched),
			e.topic(kindTransformed, shard), e.backend.handlerPublisher(), handlers.Transform())
		router.AddHandler(handlerName(handlers.StageWrite, shard), e.topic(kindTransformed, shard), sub(kindTransformed),
			e.topic(kindProcessed, shard), e.backend.handlerPublisher(), handlers.Write(e.backend.begin))
		router.AddConsumerHandler(handlerName("results", shard), e.topic(kindProcessed, shard), sub(kindProcessed), e.deliver)
	}
	return e, nil
}

func handlerName(stage string, shard int) string { return fmt.Sprintf("%s.%d", stage, shard) }

func stageOfHandler(name string) string {
	stage, _, _ := strings.Cut(name, ".")
	return stage
}

// topic names a sharded topic; shard < 0 is an unsharded one (poison).
func (e *Engine) topic(kind string, shard int) string {
	if shard < 0 {
		return e.cfg.Namespace + "." + kind
	}
	return fmt.Sprintf("%s.%s.%d", e.cfg.Namespace, kind, shard)
}

func isPoisonTopic(topic string) bool { return strings.HasSuffix(topic, "."+kindPoison) }

// Shard is the shard of a race: stable, so one race's polls stay in order.
func Shard(raceID string, shards int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(raceID))
	return int(h.Sum32() % uint32(shards))
}

// Topics lists every topic of the flow by kind.
func (e *Engine) Topics() map[string][]string {
	out := map[string][]string{kindPoison: {e.topic(kindPoison, -1)}}
	for _, kind := range []string{kindPoll, kindFetched, kindTransformed, kindProcessed} {
		for s := 0; s < e.cfg.Shards; s++ {
			out[kind] = append(out[kind], e.topic(kind, s))
		}
	}
	return out
}

// PoisonTopic is the topic failed messages go to.
func (e *Engine) PoisonTopic() string { return e.topic(kindPoison, -1) }

// FetchedTopic is the stored topic of a shard (raw API bodies).
func (e *Engine) FetchedTopic(shard int) string { return e.topic(kindFetched, shard) }

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
	if err := e.backend.init(ctx, e.Topics()); err != nil {
		return err
	}
	// The router's own context would cancel subscriptions under running
	// handlers; close through Close instead (drain.go).
	stop := context.AfterFunc(ctx, func() { _ = e.router.Close() })
	defer stop()
	err := e.router.Run(context.WithoutCancel(ctx))
	if err == nil {
		err = ctx.Err()
	}
	return errors.Join(err, e.backend.close())
}

// Running is closed once every handler runs.
func (e *Engine) Running() chan struct{} { return e.router.Running() }

// Close stops the routers; in-flight messages are finished or redelivered.
// An engine that never ran (one used only to publish polls) releases its
// backend's connections instead.
func (e *Engine) Close() error {
	e.flight.Lock()
	if !e.ran {
		if e.released {
			e.flight.Unlock()
			return nil
		}
		e.released = true
		e.flight.Unlock()
		return e.backend.close()
	}
	e.flight.Unlock()
	return e.router.Close()
}

// errEngineReleased: Run after Close of an engine that never ran.
var errEngineReleased = errors.New("flows: engine closed before it ran")

// OnResult registers fn to see every poll result this engine receives (the
// scheduler). On the nats backend every instance receives every result. It
// must not block.
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
	return !e.backend.fanOutResults() || msg.Metadata.Get(keyProducer) == e.instance
}

// derivedUUID is the id of an output of the message with id parent: the
// same for every redelivery of parent, so a backend that deduplicates by id
// (JetStream) drops what a redone stage publishes again. Distinct per
// purpose.
func derivedUUID(parent, purpose string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("raceflow:"+parent+"/"+purpose)).String()
}

// RequestPoll publishes a poll of raceID and returns its poll id.
func (e *Engine) RequestPoll(ctx context.Context, raceID, reason string) (string, error) {
	now := e.deps.Now()
	req := handlers.PollRequest{RaceID: raceID, PollID: handlers.PollID(raceID, now), RequestedAt: now, Reason: reason}
	return req.PollID, e.publishPoll(ctx, req)
}

func (e *Engine) publishPoll(ctx context.Context, req handlers.PollRequest) error {
	msg, err := handlers.NewPollMessage(req, false)
	if err != nil {
		return err
	}
	msg.SetContext(ctx)
	if err := e.pub.Publish(e.topic(kindPoll, Shard(req.RaceID, e.cfg.Shards)), msg); err != nil {
		return fmt.Errorf("flows: publish poll of %s: %w", req.RaceID, err)
	}
	e.log.WithFields(logrus.Fields{"race_id": req.RaceID, "poll_id": req.PollID, "reason": req.Reason}).Debug("pipeline start")
	return nil
}

// deliver consumes race.processed: logs the end of the pipeline and hands
// the result to waiters and observers.
func (e *Engine) deliver(msg *message.Message) error {
	res, err := handlers.DecodeResult(msg, e.deps.Now())
	if err != nil {
		e.log.WithError(err).Error("undecodable result dropped")
		return nil // nothing to retry: the payload will never decode
	}
	fields := logrus.Fields{
		"race_id": res.RaceID, "poll_id": res.PollID, "status": res.Status,
		"fetch_ms": res.Timings.FetchMS, "transform_ms": res.Timings.TransformMS, "write_ms": res.Timings.WriteMS,
		"queue_ms": res.Timings.QueueMS, "duration_ms": res.Timings.TotalMS,
		"rows_money_flow": res.Rows.MoneyFlow, "rows_odds": res.Rows.Odds, "rows_entrants": res.Rows.Entrants,
	}
	entry := e.log.WithFields(fields)
	switch {
	case res.Error != nil:
		entry.WithField("stage", res.Error.Stage).WithField("error", res.Error.Message).Warn("pipeline end")
	case res.Timings.TotalMS >= float64(e.cfg.SlowPoll/time.Millisecond):
		entry.Warn("pipeline end: slow poll")
	default:
		entry.Info("pipeline end")
	}
	e.mu.Lock()
	ch := e.waiters[res.PollID]
	delete(e.waiters, res.PollID)
	obs := e.observers
	if e.ownResult(msg) {
		obs = append(slices.Clip(obs), e.ownObservers...)
	}
	e.mu.Unlock()
	// Observers first: when ProcessRace returns, metrics and the scheduler
	// have already seen the result.
	for _, fn := range obs {
		fn(res)
	}
	if ch != nil {
		ch <- res // buffered
	}
	return nil
}

// ProcessRace polls one race now and waits for its result. A failed poll
// returns its result and the typed FetchError, TransformError or WriteError.
func (e *Engine) ProcessRace(ctx context.Context, raceID string) (handlers.ProcessResult, error) {
	now := e.deps.Now()
	req := handlers.PollRequest{RaceID: raceID, PollID: handlers.PollID(raceID, now), RequestedAt: now, Reason: "process"}
	ch := make(chan handlers.ProcessResult, 1)
	e.mu.Lock()
	e.waiters[req.PollID] = ch
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.waiters, req.PollID)
		e.mu.Unlock()
	}()
	if err := e.publishPoll(ctx, req); err != nil {
		return handlers.ProcessResult{RaceID: raceID, PollID: req.PollID, Status: handlers.StatusFailed}, err
	}
	select {
	case res := <-ch:
		return res, res.Err()
	case <-ctx.Done():
		return handlers.ProcessResult{RaceID: raceID, PollID: req.PollID, Status: handlers.StatusFailed}, ctx.Err()
	}
}

// ProcessRaces processes races with at most concurrency in flight (a sliding
// window, not fixed chunks) and returns results in the order of ids. The
// error joins every failed race's typed error.
func (e *Engine) ProcessRaces(ctx context.Context, ids []string, concurrency int) ([]handlers.ProcessResult, error) {
	if concurrency < 1 {
		concurrency = 1
	}
	results := make([]handlers.ProcessResult, len(ids))
	errs := make([]error, len(ids))
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, id := range ids {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i], errs[i] = e.ProcessRace(ctx, id)
		}()
	}
	wg.Wait()
	return results, errors.Join(errs...)
}
