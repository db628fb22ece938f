package nztabsim

import (
	"sync"
	"time"
)

// Clock tells the simulator which simulated instant "now" is; every response
// describes the race day as it stands at that instant.
type Clock interface {
	Now() time.Time
}

// ClockFunc adapts a function, such as time.Now, to Clock.
type ClockFunc func() time.Time

// Now calls f.
func (f ClockFunc) Now() time.Time { return f() }

// SpeedClock runs simulated time at a multiple of real time from a chosen
// start, so a whole race day can be replayed in minutes.
type SpeedClock struct {
	start     time.Time
	realStart time.Time
	speed     float64
	real      func() time.Time
}

// NewSpeedClock returns a clock whose simulated time is
// start + (real() − real-at-construction) × speed. A nil real means
// time.Now; a non-positive speed means 1 (real time), since a clock that
// stands still or runs backwards would freeze or rewind the race day.
func NewSpeedClock(start time.Time, speed float64, real func() time.Time) *SpeedClock {
	if real == nil {
		real = time.Now
	}
	if speed <= 0 {
		speed = 1
	}
	return &SpeedClock{start: start, realStart: real(), speed: speed, real: real}
}

// Now returns the current simulated instant.
func (c *SpeedClock) Now() time.Time {
	elapsed := c.real().Sub(c.realStart)
	return c.start.Add(time.Duration(float64(elapsed) * c.speed))
}

// After waits for d of simulated time, i.e. d/speed of real time, so a
// scheduler driven by this clock keeps its cadence in simulated time. The
// value sent is the real instant.
func (c *SpeedClock) After(d time.Duration) <-chan time.Time {
	return time.After(time.Duration(float64(d) / c.speed))
}

// Speed is the number of simulated seconds per real second.
func (c *SpeedClock) Speed() float64 { return c.speed }

// Start is the simulated instant at which the clock was created.
func (c *SpeedClock) Start() time.Time { return c.start }

// ManualClock is a Clock that moves only when told to; tests use it to look
// at the race day at exact instants. It is safe for concurrent use.
type ManualClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewManualClock returns a ManualClock standing at t.
func NewManualClock(t time.Time) *ManualClock { return &ManualClock{now: t} }

// Now returns the instant the clock stands at.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t, forwards or backwards.
func (c *ManualClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// Advance moves the clock by d and returns the new instant.
func (c *ManualClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}
