package flows

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/flows/schedule"
	"github.com/raceflow/raceflow/handlers"
	"github.com/raceflow/raceflow/stages/baseline"
	"github.com/raceflow/raceflow/stages/nztab"
	"github.com/raceflow/raceflow/stages/partitions"
	"github.com/raceflow/raceflow/status"
	"github.com/raceflow/raceflow/web"
)

// ServiceConfig shapes continuous processing: the flow, the scheduler and
// the housekeeping around them.
type ServiceConfig struct {
	Flow       Config
	Schedule   schedule.Config
	Leader     schedule.LeaderConfig
	LeaderKey  int64
	Filter     baseline.Filter
	Partitions partitions.Config
	// Housekeeping is how often partitions are ensured and expired ones dropped.
	Housekeeping time.Duration
	// DrainTimeout bounds how long shutdown waits for in-flight polls.
	DrainTimeout time.Duration
	// BaselineRefresh is the meeting refresh period (0: the runner's default).
	BaselineRefresh time.Duration
}

// DefaultServiceConfig is production cadence on PostgreSQL.
func DefaultServiceConfig() ServiceConfig {
	return ServiceConfig{
		Flow:         DefaultConfig(),
		Schedule:     schedule.DefaultConfig(),
		Leader:       schedule.DefaultLeaderConfig(),
		LeaderKey:    schedule.DefaultLeaderKey,
		Filter:       baseline.DefaultFilter(),
		Partitions:   partitions.DefaultConfig(),
		Housekeeping: time.Hour,
		DrainTimeout: 30 * time.Second,
	}
}

// API is what the service needs of the NZ TAB API.
type API interface {
	handlers.Fetcher
	FetchMeetings(ctx context.Context, day string) (nztab.MeetingsList, error)
}

// ServiceDeps are what the service runs on.
type ServiceDeps struct {
	Pool     *pgxpool.Pool
	API      API
	Logger   logrus.FieldLogger
	Registry *prometheus.Registry // nil: a new one
	Metrics  *Metrics             // nil: NewMetrics(Registry)
	Clock    schedule.Clock       // nil: the wall clock
}

// Service is `raceflow run`: the flow on every replica; the daily baseline
// and the scheduler on the elected leader only.
type Service struct {
	cfg       ServiceConfig
	deps      ServiceDeps
	engine    *Engine
	scheduler *schedule.Scheduler
	baseline  *schedule.BaselineRunner
	leader    *schedule.Leader
	parts     *partitions.Manager
	pruner    *Pruner
	metrics   *Metrics
	queues    *QueueCollector
	status    *status.Model
	pages     http.Handler

	mu         sync.Mutex
	flowUp     bool
	flowFailed error
}

// NewService assembles the service; nothing runs until Run.
func NewService(cfg ServiceConfig, deps ServiceDeps) (*Service, error) {
	if deps.Pool == nil || deps.API == nil || deps.Logger == nil {
		return nil, errors.New("flows: ServiceDeps needs Pool, API and Logger")
	}
	if deps.Clock == nil {
		deps.Clock = schedule.RealClock{}
	}
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
		deps.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	s := &Service{cfg: cfg, deps: deps}
	var err error
	if s.parts, err = partitions.New(deps.Pool, cfg.Partitions); err != nil {
		return nil, err
	}
	if s.metrics = deps.Metrics; s.metrics == nil {
		if s.metrics, err = NewMetrics(deps.Registry); err != nil {
			return nil, err
		}
	}
	if s.engine, err = New(cfg.Flow, Deps{Pool: deps.Pool, Fetcher: deps.API, Logger: deps.Logger, Registry: deps.Registry,
		Metrics: s.metrics, Now: deps.Clock.Now}); err != nil {
		return nil, err
	}
	s.engine.OnOwnResult(s.metrics.Observe)
	if s.scheduler, err = schedule.New(cfg.Schedule, schedule.Deps{
		Races:  schedule.NewPGRaces(deps.Pool, cfg.Schedule),
		Poller: s.engine,
		Clock:  deps.Clock,
		Logger: deps.Logger,
	}); err != nil {
		return nil, err
	}
	s.engine.OnResult(s.scheduler.OnResult)
	s.queues = NewQueueCollector(s.engine.Driver())
	cols := []prometheus.Collector{
		NewPoolCollector(deps.Pool),
		NewSchedulerCollector(func() (int, int) { st := s.scheduler.Stats(); return st.Tracked, st.InFlight }),
		NewSeriesEndsCollector(s.engine.SeriesEnds),
		s.queues,
	}
	cols = append(cols, s.engine.Driver().Collectors()...)
	for _, c := range cols {
		if err := deps.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("flows: register collectors: %w", err)
		}
	}
	s.baseline = &schedule.BaselineRunner{
		Fetch: deps.API.FetchMeetings,
		Upsert: func(ctx context.Context, m []baseline.MeetingRow, r []baseline.RaceRow) (baseline.Counts, error) {
			return baseline.Upsert(ctx, deps.Pool, m, r)
		},
		// Each meetings list is kept, like the stored topic, so a replay can
		// restore what only the list carries.
		Store: func(ctx context.Context, resp baseline.Response) error {
			return baseline.Store(ctx, deps.Pool, resp)
		},
		Clock:   deps.Clock,
		Filter:  cfg.Filter,
		Log:     deps.Logger,
		Refresh: cfg.BaselineRefresh,
	}
	if err := s.baseline.Validate(); err != nil {
		return nil, err
	}
	if s.leader, err = schedule.NewLeader(deps.Pool, leaderKey(cfg.LeaderKey, cfg.Flow.Namespace), cfg.Leader, deps.Logger); err != nil {
		return nil, err
	}
	if s.status, err = s.newStatusModel(); err != nil {
		return nil, err
	}
	if s.pages, err = web.New(s.status, web.DefaultConfig()); err != nil {
		return nil, err
	}
	// created_at of stored messages is the database's clock, so the pruner
	// runs on the wall clock even when scheduling runs on simulated time.
	if s.pruner, err = NewPruner(PrunerConfig{Retention: cfg.Flow.Retention, BatchSize: 1000, Interval: cfg.Housekeeping},
		s.engine.Driver(), deps.Logger, nil, func(ctx context.Context, cutoff time.Time, batch int) (int64, error) {
			return baseline.Prune(ctx, deps.Pool, cutoff, batch)
		}); err != nil {
		return nil, err
	}
	return s, nil
}

// leaderKey is the advisory-lock key of namespace's scheduler: flows of
// other namespaces on the same database elect their own leaders. The
// default namespace keeps key as it is.
func leaderKey(key int64, namespace string) int64 {
	if namespace == config.DefaultNamespace {
		return key
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(namespace))
	return key ^ int64(h.Sum64()>>1)
}

// Engine is the flow the service runs.
func (s *Service) Engine() *Engine { return s.engine }

// Scheduler is the service's scheduler (active only while leading).
func (s *Service) Scheduler() *schedule.Scheduler { return s.scheduler }

// Metrics are the service's own metrics.
func (s *Service) Metrics() *Metrics { return s.metrics }

// Run runs until ctx ends, then drains: scheduling stops first, in-flight
// polls get DrainTimeout to finish, then the flow stops (anything still in
// flight is redelivered on the next start).
func (s *Service) Run(ctx context.Context) error {
	log := s.deps.Logger
	if err := s.parts.Ensure(ctx, s.deps.Clock.Now()); err != nil {
		return err
	}
	flowCtx, stopFlow := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFlow()
	flowDone := make(chan error, 1)
	go func() {
		err := s.engine.Run(flowCtx)
		s.mu.Lock()
		s.flowUp, s.flowFailed = false, err
		s.mu.Unlock()
		flowDone <- err
	}()
	select {
	case <-s.engine.Running():
		s.mu.Lock()
		s.flowUp = true
		s.mu.Unlock()
	case err := <-flowDone:
		return fmt.Errorf("flows: the flow stopped before it ran: %w", err)
	}

	// Scheduling and housekeeping stop with ctx, or when the flow dies on
	// its own: without it there is nothing to schedule for.
	workCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.housekeeping(workCtx)
	}()
	go func() {
		defer wg.Done()
		err := s.leader.Run(workCtx, s.lead)
		if err != nil && workCtx.Err() == nil {
			log.WithError(err).Error("scheduling stopped")
		}
	}()

	var flowErr error
	select {
	case <-ctx.Done():
	case flowErr = <-flowDone:
		log.WithError(flowErr).Error("the flow stopped; stopping the service")
		flowDone <- flowErr
	}
	stopWork()
	wg.Wait()
	s.drain()
	stopFlow()
	flowErr = <-flowDone
	if errors.Is(flowErr, context.Canceled) {
		flowErr = nil
	}
	if flowErr == nil && ctx.Err() == nil {
		flowErr = errors.New("flows: the flow stopped before the service was asked to")
	}
	return flowErr
}

// lead is what the elected leader runs until it stops leading: the daily
// baseline, retention (one pruner per database) and, once the first
// baseline has run, the scheduler. It returns when all three have.
func (s *Service) lead(ctx context.Context) error {
	log := s.deps.Logger
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var g errgroup.Group
	g.Go(func() error {
		if err := s.baseline.Run(ctx); err != nil && ctx.Err() == nil {
			log.WithError(err).Error("daily baseline stopped")
		}
		return nil
	})
	g.Go(func() error {
		if err := s.pruner.Run(ctx); err != nil && ctx.Err() == nil {
			log.WithError(err).Error("stored-topic retention stopped")
		}
		return nil
	})
	var schedErr error
	g.Go(func() error {
		defer stop() // without the scheduler, the others stop too
		select {
		case <-s.baseline.FirstRun():
		case <-ctx.Done():
			return nil
		}
		schedErr = s.scheduler.Run(ctx)
		return nil
	})
	_ = g.Wait()
	return schedErr
}

// drain waits until the polls the scheduler requested have their results.
func (s *Service) drain() {
	deadline := time.Now().Add(s.cfg.DrainTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	// Scheduling has stopped, so nothing ticks: settle the results here.
	for s.scheduler.Settle(s.deps.Clock.Now()).InFlight > 0 && time.Now().Before(deadline) {
		<-tick.C
	}
	if n := s.scheduler.Stats().InFlight; n > 0 {
		s.deps.Logger.WithField("in_flight", n).Warn("shutdown: polls still in flight are redelivered on the next start")
	}
}

func (s *Service) housekeeping(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.Housekeeping):
		}
		now := s.deps.Clock.Now()
		if err := s.parts.Ensure(ctx, now); err != nil {
			s.deps.Logger.WithError(err).Error("partition housekeeping")
			continue
		}
		if dropped, err := s.parts.DropExpired(ctx, now); err != nil {
			s.deps.Logger.WithError(err).Error("partition retention")
		} else if len(dropped) > 0 {
			s.deps.Logger.WithField("partitions", dropped).Info("dropped expired partitions")
		}
	}
}

// NotReadyError says which part of the service is not ready, and why.
type NotReadyError struct {
	// Part is "flow", "database" or "message broker": what /readyz tells
	// anyone who asks.
	Part string
	// Err is why, for the logs.
	Err error
}

func (e *NotReadyError) Error() string { return e.Part + ": " + e.Err.Error() }
func (e *NotReadyError) Unwrap() error { return e.Err }

// Ready reports whether the service can do its work: the database answers,
// the flow runs and its message backend is connected; a *NotReadyError
// says which does not.
func (s *Service) Ready(ctx context.Context) error {
	s.mu.Lock()
	up, failed := s.flowUp, s.flowFailed
	s.mu.Unlock()
	if !up {
		if failed == nil {
			failed = errors.New("not running")
		}
		return &NotReadyError{Part: "flow", Err: failed}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.deps.Pool.Ping(ctx); err != nil {
		return &NotReadyError{Part: "database", Err: err}
	}
	if err := s.engine.Driver().Health(ctx); err != nil {
		return &NotReadyError{Part: "message broker", Err: err}
	}
	return nil
}

// Handler serves /healthz (the process is up), /readyz (the database
// answers and the flow runs), /metrics and the status page. Serve it with
// NewHTTPServer.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Ready(r.Context()); err != nil {
			// The part, not the error's text: that may name hosts and
			// internals, and the endpoint answers anyone.
			part := "service"
			var nr *NotReadyError
			if errors.As(err, &nr) {
				part = nr.Part
			}
			s.deps.Logger.WithError(err).Debug("not ready")
			http.Error(w, "not ready: "+part, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.deps.Registry, promhttp.HandlerOpts{}))
	mux.Handle("/", s.pages) // the status page: /, /races/{id}, /pipeline, /poison/{id}, /api/...
	return mux
}

// NewHTTPServer is the server for Handler: every phase of a request is
// bounded, so idle or slow clients cannot hold connections (scrapes and
// the page answer in well under a second).
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}
