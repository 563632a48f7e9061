package fsm

import "iter"

// packedKeyBytes is how many bytes of client id plus request id a record
// key holds inline. The client library's ids (rand.Text, 26 characters
// each) fit; longer ones, up to the 128 + 128 the server accepts, go to
// the table's second map.
const packedKeyBytes = 54

// packedKey is a requestKey without pointers: the client id's length, the
// total length, then both ids' bytes and zeros. It is injective (the
// lengths say where the client id ends and the zeros start), so map
// equality on it is equality of the two ids.
type packedKey struct {
	clientLen, n uint8
	b            [packedKeyBytes]byte
}

func packKey(k requestKey) (packedKey, bool) {
	n := len(k.client) + len(k.request)
	if n > packedKeyBytes {
		return packedKey{}, false
	}
	p := packedKey{clientLen: uint8(len(k.client)), n: uint8(n)}
	copy(p.b[copy(p.b[:], k.client):], k.request)
	return p, true
}

func (p *packedKey) unpack() requestKey {
	return requestKey{client: string(p.b[:p.clientLen]), request: string(p.b[p.clientLen:p.n])}
}

// requestTable holds the request records. Nearly every record (one per
// live lease and per request id ended in the last requestMemoryMs, so
// 100,000s under load) sits in a map whose keys and values hold no
// pointers: the garbage collector neither scans it nor marks a string per
// record, which under a large table was most of its work and showed as
// checkout latency. Ids too long to pack sit in long.
type requestTable struct {
	short map[packedKey]requestRecord
	long  map[requestKey]requestRecord
}

func newRequestTable() requestTable {
	return requestTable{short: map[packedKey]requestRecord{}, long: map[requestKey]requestRecord{}}
}

func (t *requestTable) get(k requestKey) (requestRecord, bool) {
	if p, ok := packKey(k); ok {
		rec, found := t.short[p]
		return rec, found
	}
	rec, found := t.long[k]
	return rec, found
}

func (t *requestTable) set(k requestKey, rec requestRecord) {
	if p, ok := packKey(k); ok {
		t.short[p] = rec
		return
	}
	t.long[k] = rec
}

func (t *requestTable) len() int { return len(t.short) + len(t.long) }

// all yields every record, in map order: callers that need an order sort.
// Each key is unpacked into new strings, so it is for snapshots and
// tests, not for paths that run while serving.
func (t *requestTable) all() iter.Seq2[requestKey, requestRecord] {
	return func(yield func(requestKey, requestRecord) bool) {
		for p, rec := range t.short {
			if !yield(p.unpack(), rec) {
				return
			}
		}
		for k, rec := range t.long {
			if !yield(k, rec) {
				return
			}
		}
	}
}

// update calls edit on every record, in map order (each record must be
// judged alone: the order does not show), without unpacking keys. edit
// changes the record in place and returns whether to delete it instead;
// dropped, when not nil, is called for each deleted record with a function
// that unpacks its key, for the few callers that need it.
func (t *requestTable) update(edit func(rec *requestRecord) (drop bool), dropped func(rec requestRecord, key func() requestKey)) {
	for p, rec := range t.short {
		old := rec
		if edit(&rec) {
			delete(t.short, p)
			if dropped != nil {
				q := p // only a dropped record's key escapes
				dropped(rec, q.unpack)
			}
		} else if rec != old {
			t.short[p] = rec
		}
	}
	for k, rec := range t.long {
		old := rec
		if edit(&rec) {
			delete(t.long, k)
			if dropped != nil {
				kk := k
				dropped(rec, func() requestKey { return kk })
			}
		} else if rec != old {
			t.long[k] = rec
		}
	}
}
