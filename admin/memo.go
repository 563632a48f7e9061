package admin

import (
	"sync"
	"time"

	"github.com/triadlm/triad/proto/triadv1"
)

// answerMemo remembers a few recent answers by request id, so that a
// triadctl retry (after a timeout whose attempt had in fact run) gets the
// first answer. It is this member's memory only: bounded by count and age.
type answerMemo struct {
	mu      sync.Mutex
	order   []string
	answers map[string]memoEntry
}

type memoEntry struct {
	at time.Time
	r  *triadv1.UsageReleaseResponse
}

const (
	memoMax = 256
	memoAge = 10 * time.Minute
)

func (m *answerMemo) get(id string) (*triadv1.UsageReleaseResponse, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.answers[id]
	if !ok || time.Since(e.at) > memoAge {
		return nil, false
	}
	return e.r, true
}

func (m *answerMemo) put(id string, r *triadv1.UsageReleaseResponse) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.answers == nil {
		m.answers = map[string]memoEntry{}
	}
	if _, ok := m.answers[id]; !ok {
		m.order = append(m.order, id)
	}
	m.answers[id] = memoEntry{time.Now(), r}
	for len(m.order) > memoMax {
		delete(m.answers, m.order[0])
		m.order = m.order[1:]
	}
}
