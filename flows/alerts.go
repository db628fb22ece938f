package flows

import (
	"errors"
	"fmt"

	"github.com/raceflow/raceflow/flows/driver"
	"github.com/raceflow/raceflow/flows/notify"
)

// The alerts' side of the flow: the detect stage is a handler like the
// others (engine.go); the notifier consumes the alerts topic on its own
// subscription and goroutine, which Run starts and waits for, so a webhook
// that is slow or down never holds up a poll.

// validateAlerts checks the alert rules and the notifier's settings.
func (c Config) validateAlerts() error {
	var errs []error
	if err := c.Alerts.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("flows: alert rules: %w", err))
	}
	if err := c.Notify.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("flows: %w", err))
	}
	if c.Notify.Budget >= c.AckDeadline {
		errs = append(errs, fmt.Errorf("flows: an alert's delivery budget %s must be under the ack deadline %s", c.Notify.Budget, c.AckDeadline))
	}
	return errors.Join(errs...)
}

// newNotifier builds the notifier on a subscription of its own to the
// flow's alerts topic, and registers its metrics.
func (e *Engine) newNotifier() error {
	sub, err := e.drv.Subscriber(driver.Alerts, 1)
	if err != nil {
		return fmt.Errorf("flows: alerts subscriber: %w", err)
	}
	n, err := notify.New(e.cfg.Notify, notify.Deps{Subscriber: sub, Topic: driver.AlertsTopic(e.cfg.Namespace).String(),
		Middleware: e.drv.Middleware(), Logger: e.log})
	if err != nil {
		return errors.Join(err, sub.Close())
	}
	if e.deps.Registry != nil {
		for _, c := range n.Collectors() {
			if err := e.deps.Registry.Register(c); err != nil {
				return errors.Join(fmt.Errorf("flows: register alert metrics: %w", err), sub.Close())
			}
		}
	}
	e.notifier = n
	return nil
}
