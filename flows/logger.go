package flows

import (
	"context"
	"errors"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/sirupsen/logrus"
)

// logrusAdapter lets Watermill log through logrus. Watermill is chatty at
// Info (every handler start and stop), so its Info goes to Debug.
type logrusAdapter struct{ l logrus.FieldLogger }

// NewLogger adapts a logrus logger to Watermill's LoggerAdapter.
func NewLogger(l logrus.FieldLogger) watermill.LoggerAdapter { return logrusAdapter{l} }

func (a logrusAdapter) Error(msg string, err error, f watermill.LogFields) {
	e := a.l.WithFields(logrus.Fields(f)).WithError(err)
	if errors.Is(err, context.Canceled) || errors.Is(err, errClosing) {
		// Subscribers report every poll cut short by shutdown, and the router
		// every message the closing engine turns away (it is redelivered);
		// both are expected.
		e.Debug(msg)
		return
	}
	e.Error(msg)
}
func (a logrusAdapter) Info(msg string, f watermill.LogFields) {
	a.l.WithFields(logrus.Fields(f)).Debug(msg)
}
func (a logrusAdapter) Debug(msg string, f watermill.LogFields) {
	a.l.WithFields(logrus.Fields(f)).Trace(msg)
}
func (a logrusAdapter) Trace(msg string, f watermill.LogFields) {
	a.l.WithFields(logrus.Fields(f)).Trace(msg)
}
func (a logrusAdapter) With(f watermill.LogFields) watermill.LoggerAdapter {
	return logrusAdapter{a.l.WithFields(logrus.Fields(f))}
}
