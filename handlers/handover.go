package handlers

import (
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/raceflow/raceflow/stages/nztab"
)

// Handover passes the event the fetch stage decoded (to check it) to the
// write handler of the same poll in the same process, which transforms it,
// so that the body is decoded once. The message still carries the stored
// raw body: a write handler in another process, or one redone after a
// restart, decodes it again and gets the same snapshot, because the
// transform is a pure function of the body and the observation instant. A
// nil *Handover hands nothing over.
type Handover struct {
	events handoverMap[*nztab.EventResponse]
}

// NewHandover keeps at most size events; the oldest go first (one never
// taken, because the write ran elsewhere, is dropped in time).
func NewHandover(size int) *Handover {
	return &Handover{events: handoverMap[*nztab.EventResponse]{max: size}}
}

// handoverKey names one fetch of one poll: the poll id and the
// observation instant, as every message after the fetch carries them.
func handoverKey(md message.Metadata) string {
	return md.Get(KeyPollID) + "\x00" + md.Get(KeyObservedAt)
}

// handoverMap is a bounded map, first in first out.
type handoverMap[T any] struct {
	mu    sync.Mutex
	max   int
	m     map[string]T
	order []string
}

func (h *handoverMap[T]) put(key string, v T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]T{}
	}
	if _, ok := h.m[key]; !ok {
		h.order = append(h.order, key)
	}
	h.m[key] = v
	for len(h.order) > h.max {
		delete(h.m, h.order[0])
		h.order = h.order[1:]
	}
}

// take removes and returns key's value.
func (h *handoverMap[T]) take(key string) (T, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.m[key]
	if ok {
		delete(h.m, key) // its order entry goes when it is the oldest
	}
	return v, ok
}

func (h *Handover) putEvent(md message.Metadata, ev *nztab.EventResponse) {
	if h != nil && ev != nil {
		h.events.put(handoverKey(md), ev)
	}
}

func (h *Handover) takeEvent(md message.Metadata) (*nztab.EventResponse, bool) {
	if h == nil {
		return nil, false
	}
	return h.events.take(handoverKey(md))
}
