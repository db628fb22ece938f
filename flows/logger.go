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
	level := logrus.ErrorLevel
	if errors.Is(err, context.Canceled) || errors.Is(err, errClosing) {
		// Subscribers report every poll cut short by shutdown, and the router
		// every message the closing engine turns away (it is redelivered);
		// both are expected.
		level = logrus.DebugLevel
	}
	a.log(level, msg, f, err)
}
func (a logrusAdapter) Info(msg string, f watermill.LogFields) {
	a.log(logrus.DebugLevel, msg, f, nil)
}
func (a logrusAdapter) Debug(msg string, f watermill.LogFields) {
	a.log(logrus.TraceLevel, msg, f, nil)
}
func (a logrusAdapter) Trace(msg string, f watermill.LogFields) {
	a.log(logrus.TraceLevel, msg, f, nil)
}
func (a logrusAdapter) With(f watermill.LogFields) watermill.LoggerAdapter {
	return logrusAdapter{a.l.WithFields(logrus.Fields(f))}
}

// log writes one line at level. Watermill traces every message it handles,
// so a level that is off returns before the fields are copied into an entry.
func (a logrusAdapter) log(level logrus.Level, msg string, f watermill.LogFields, err error) {
	if !enabled(a.l, level) {
		return
	}
	e := a.l.WithFields(logrus.Fields(f))
	if err != nil {
		e = e.WithError(err)
	}
	e.Log(level, msg)
}

// enabled reports whether l writes lines at level. A FieldLogger that is
// neither a Logger nor an Entry cannot say, so it is asked to write.
func enabled(l logrus.FieldLogger, level logrus.Level) bool {
	switch l := l.(type) {
	case *logrus.Logger:
		return l.IsLevelEnabled(level)
	case *logrus.Entry:
		return l.Logger.IsLevelEnabled(level)
	}
	return true
}
