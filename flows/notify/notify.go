// Package notify delivers the flow's alerts to a webhook. It consumes the
// alerts topic on a subscription and a goroutine of its own, so a webhook
// that is slow or down never slows the polls, and posts each alert as JSON
// with an Idempotency-Key header (the alert's id), retrying with
// exponential backoff. A message is acknowledged only once the webhook has
// answered 2xx: one whose delivery runs out of time, or whose process
// stops, is handed out again by the backend, so every alert is delivered at
// least once and a receiver deduplicates by the key. Without a webhook the
// alerts are acknowledged as they come (the alerts table keeps them).
package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/raceflow/raceflow/config"
	"github.com/raceflow/raceflow/handlers"
)

// Config shapes the deliveries. Start from DefaultConfig.
type Config struct {
	// URL is the webhook (RACEFLOW_ALERT_WEBHOOK_URL); empty: no delivery.
	URL string
	// Timeout bounds one attempt.
	Timeout time.Duration
	// InitialInterval and MaxInterval bound the backoff between attempts.
	InitialInterval, MaxInterval time.Duration
	// Budget bounds how long one delivery of a message keeps trying; after
	// it the message goes back to the backend, which hands it out again
	// (after its own redelivery delay). It must stay under the flow's ack
	// deadline, which the backend enforces anyway.
	Budget time.Duration
}

// DefaultConfig: no webhook; 5 s per attempt, backoff from 250 ms to 10 s,
// 30 s per delivery.
func DefaultConfig() Config {
	return Config{Timeout: 5 * time.Second, InitialInterval: 250 * time.Millisecond, MaxInterval: 10 * time.Second,
		Budget: 30 * time.Second}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if err := config.CheckWebhookURL(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("notify: webhook %s: %w", config.RedactURL(c.URL), err))
	}
	if c.Timeout <= 0 || c.InitialInterval <= 0 || c.MaxInterval < c.InitialInterval || c.Budget < c.Timeout {
		errs = append(errs, fmt.Errorf("notify: need Timeout > 0, 0 < InitialInterval ≤ MaxInterval and Budget ≥ Timeout (got %s, %s, %s, %s)",
			c.Timeout, c.InitialInterval, c.MaxInterval, c.Budget))
	}
	return errors.Join(errs...)
}

// Deps are what the notifier consumes and delivers with.
type Deps struct {
	// Subscriber consumes Topic, the flow's alerts topic; the notifier
	// closes it when it stops.
	Subscriber message.Subscriber
	Topic      string
	// Middleware is the driver's (NATS keeps a long delivery alive and
	// acknowledges it).
	Middleware message.HandlerMiddleware
	// Client posts; nil: a client of its own.
	Client *http.Client
	Logger logrus.FieldLogger
}

// Notifier delivers alerts.
type Notifier struct {
	cfg  Config
	deps Deps

	deliveries *prometheus.CounterVec
	failures   *prometheus.CounterVec
}

// Outcomes of an alert message (raceflow_alert_deliveries_total).
const (
	OutcomeDelivered = "delivered" // the webhook answered 2xx
	OutcomeSkipped   = "skipped"   // no webhook is configured
	OutcomeReturned  = "returned"  // the delivery ran out of time or was stopped; the backend hands it out again
	OutcomeBad       = "undecodable"
)

// New builds a notifier; cfg is validated.
func New(cfg Config, deps Deps) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Subscriber == nil || deps.Topic == "" || deps.Logger == nil {
		return nil, errors.New("notify: Deps needs Subscriber, Topic and Logger")
	}
	if deps.Middleware == nil {
		deps.Middleware = func(h message.HandlerFunc) message.HandlerFunc { return h }
	}
	if deps.Client == nil {
		deps.Client = &http.Client{}
	}
	n := &Notifier{cfg: cfg, deps: deps,
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "raceflow", Name: "alert_deliveries_total",
			Help: "Alert messages by outcome: delivered to the webhook, skipped (no webhook), returned for redelivery (out of time or stopped), undecodable."},
			[]string{"outcome"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "raceflow", Name: "alert_delivery_failures_total",
			Help: "Failed attempts to post an alert to the webhook, by class: 4xx, 5xx, timeout, network."},
			[]string{"class"}),
	}
	for _, o := range []string{OutcomeDelivered, OutcomeSkipped, OutcomeReturned, OutcomeBad} {
		n.deliveries.WithLabelValues(o)
	}
	for _, c := range []string{"4xx", "5xx", "timeout", "network"} {
		n.failures.WithLabelValues(c)
	}
	return n, nil
}

// Collectors are the notifier's metrics.
func (n *Notifier) Collectors() []prometheus.Collector {
	return []prometheus.Collector{n.deliveries, n.failures}
}

// Run consumes the alerts topic until ctx ends, one message at a time, and
// returns once the message in hand is settled and the subscriber closed.
func (n *Notifier) Run(ctx context.Context) error {
	msgs, err := n.deps.Subscriber.Subscribe(ctx, n.deps.Topic)
	if err != nil {
		return errors.Join(fmt.Errorf("notify: subscribe to %s: %w", n.deps.Topic, err), n.deps.Subscriber.Close())
	}
	handle := n.deps.Middleware(n.handle)
	for msg := range msgs {
		if _, err := handle(msg); err != nil {
			msg.Nack()
			continue
		}
		msg.Ack()
	}
	return n.deps.Subscriber.Close()
}

// Start runs the notifier on a goroutine; the returned function stops it
// and waits for it.
func (n *Notifier) Start(ctx context.Context) (stop func() error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var err error
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err = n.Run(ctx); err != nil && ctx.Err() == nil {
			// Said now, not only at stop: the flow runs on without it.
			n.deps.Logger.WithError(err).Error("notify: alerts are not being delivered")
		}
	}()
	return func() error {
		cancel()
		wg.Wait()
		return err
	}
}

// handle delivers one alert message: nil once it is delivered (or there is
// nothing to deliver it to), an error when it must be handed out again.
func (n *Notifier) handle(msg *message.Message) ([]*message.Message, error) {
	alert, err := handlers.DecodeAlert(msg)
	if err != nil {
		// Nothing to retry: the payload will never decode.
		n.deliveries.WithLabelValues(OutcomeBad).Inc()
		n.deps.Logger.WithError(err).Error("notify: undecodable alert dropped")
		return nil, nil
	}
	if n.cfg.URL == "" {
		n.deliveries.WithLabelValues(OutcomeSkipped).Inc()
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(msg.Context(), n.cfg.Budget)
	defer cancel()
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = n.cfg.InitialInterval, n.cfg.MaxInterval
	_, err = backoff.Retry(ctx, func() (struct{}, error) { return struct{}{}, n.post(ctx, alert.ID, msg.Payload) },
		backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0))
	if err != nil {
		n.deliveries.WithLabelValues(OutcomeReturned).Inc()
		n.deps.Logger.WithFields(logrus.Fields{"alert_id": alert.ID, "race_id": alert.RaceID, "webhook": config.RedactURL(n.cfg.URL)}).
			WithError(err).Warn("notify: alert not delivered yet; it is handed out again")
		return nil, fmt.Errorf("notify: deliver alert %s: %w", alert.ID, err)
	}
	n.deliveries.WithLabelValues(OutcomeDelivered).Inc()
	return nil, nil
}

// post makes one attempt. Every failure is worth retrying: a receiver that
// refuses an alert now (a 4xx from a misconfigured or restarting receiver)
// may take it later, and dropping it would lose it.
func (n *Notifier) post(ctx context.Context, id string, payload []byte) error {
	actx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, n.cfg.URL, bytes.NewReader(payload))
	if err != nil {
		return backoff.Permanent(err) // the URL was validated: cannot happen
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", id)
	req.Header.Set("User-Agent", "raceflow-alerts")
	resp, err := n.deps.Client.Do(req)
	if err != nil {
		class := "network"
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			class = "timeout"
		}
		if ctx.Err() == nil { // not the delivery's own end
			n.failures.WithLabelValues(class).Inc()
		}
		return redact(err, n.cfg.URL)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return nil
	}
	class := "5xx"
	if resp.StatusCode/100 == 4 {
		class = "4xx"
	}
	n.failures.WithLabelValues(class).Inc()
	err = fmt.Errorf("notify: webhook answered %s", resp.Status)
	if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 && resp.StatusCode == http.StatusTooManyRequests {
		return backoff.RetryAfter(min(s, int(n.cfg.MaxInterval/time.Second)+1))
	}
	return err
}

// redact keeps the webhook's URL (whose path may be its secret) out of an
// error that reaches the logs: the client's errors quote it.
func redact(err error, webhook string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("post to %s: %w", config.RedactURL(webhook), ue.Err)
	}
	return err
}
