package fsm

import (
	"iter"

	"github.com/triadlm/triad/proto/fsmpb"
)

// packedKeyChars is how many characters of client id plus request id a
// record key holds inline, at 6 bits each from packedAlphabet. The client
// library's ids (rand.Text: 26 characters of A-Z and 2-7 each) fit, as
// does a UUID with a short client id; longer ids or other characters
// (the server accepts any 128 + 128 bytes) go to the table's second map.
const packedKeyChars = 52

// packedAlphabet is the 63 characters a packed key holds; symbol 0 pads.
const packedAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-"

var packedSymbol = func() (t [256]uint8) {
	for i := range len(packedAlphabet) {
		t[packedAlphabet[i]] = uint8(i + 1)
	}
	return t
}()

// packedKey is a requestKey without pointers: the client id's length,
// then the 6-bit symbols of both ids and zero padding. It is injective
// (no symbol is zero, so the padding says where the ids end, and the
// length where the client id does), so map equality on it is equality of
// the two ids. 40 bytes.
type packedKey struct {
	clientLen uint8
	b         [packedKeyChars * 6 / 8]byte
}

func packKey(k requestKey) (packedKey, bool) {
	if len(k.client)+len(k.request) > packedKeyChars {
		return packedKey{}, false
	}
	p := packedKey{clientLen: uint8(len(k.client))}
	bit := 0
	for _, id := range [2]string{k.client, k.request} {
		for i := range len(id) {
			v := packedSymbol[id[i]]
			if v == 0 {
				return packedKey{}, false
			}
			// 6 bits at bit offset bit, low bits first, across at most
			// two bytes.
			j, o := bit/8, bit%8
			p.b[j] |= v << o
			if o > 2 {
				p.b[j+1] |= v >> (8 - o)
			}
			bit += 6
		}
	}
	return p, true
}

func (p *packedKey) unpack() requestKey {
	var buf [packedKeyChars]byte
	n := 0
	for bit := 0; n < packedKeyChars; bit += 6 {
		j, o := bit/8, bit%8
		v := uint16(p.b[j]) >> o
		if o > 2 {
			v |= uint16(p.b[j+1]) << (8 - o)
		}
		if v&63 == 0 {
			break
		}
		buf[n] = packedAlphabet[v&63-1]
		n++
	}
	return requestKey{client: string(buf[:p.clientLen]), request: string(buf[p.clientLen:n])}
}

// packedRecord is a requestRecord in 16 bytes: the lease id (below
// 2^48), the refusal code (below 2^8) and the idle flag share a word.
// Records outside those ranges go to the table's second map.
type packedRecord struct {
	idCode  uint64
	endedMs int64
}

const packedIDLimit = 1 << 48

func packRecord(r requestRecord) (packedRecord, bool) {
	if r.LeaseId >= packedIDLimit || r.DeniedCode < 0 || r.DeniedCode > 255 {
		return packedRecord{}, false
	}
	w := r.LeaseId<<16 | uint64(r.DeniedCode)<<8
	if r.IdleTimeout {
		w |= 1
	}
	return packedRecord{idCode: w, endedMs: r.EndedMs}, true
}

func (p packedRecord) unpack() requestRecord {
	return requestRecord{LeaseId: p.idCode >> 16, DeniedCode: fsmpb.Code(p.idCode >> 8 & 0xff), IdleTimeout: p.idCode&1 == 1, EndedMs: p.endedMs}
}

// requestTable holds the request records. Nearly every record (one per
// live lease and per request id ended in the last requestMemoryMs, so
// 100,000s under load) sits in a map whose keys and values hold no
// pointers: the garbage collector neither scans it nor marks a string per
// record, which under a large table was most of its work and showed as
// checkout latency. Ids that do not pack (too long, or with characters
// outside packedAlphabet) and records that do not pack sit in long.
type requestTable struct {
	short map[packedKey]packedRecord
	long  map[requestKey]requestRecord
}

func newRequestTable() requestTable {
	return requestTable{short: map[packedKey]packedRecord{}, long: map[requestKey]requestRecord{}}
}

// get finds k's record. A key is in at most one of the maps: set deletes
// it from the other.
func (t *requestTable) get(k requestKey) (requestRecord, bool) {
	if p, ok := packKey(k); ok {
		if r, found := t.short[p]; found {
			return r.unpack(), true
		}
	}
	rec, found := t.long[k]
	return rec, found
}

func (t *requestTable) set(k requestKey, rec requestRecord) {
	if p, ok := packKey(k); ok {
		if r, ok := packRecord(rec); ok {
			t.short[p] = r
			delete(t.long, k)
			return
		}
		delete(t.short, p)
	}
	t.long[k] = rec
}

func (t *requestTable) len() int { return len(t.short) + len(t.long) }

// all yields every record, in map order: callers that need an order sort.
// Each key is unpacked into new strings, so it is for snapshots and
// tests, not for paths that run while serving.
func (t *requestTable) all() iter.Seq2[requestKey, requestRecord] {
	return func(yield func(requestKey, requestRecord) bool) {
		for p, r := range t.short {
			if !yield(p.unpack(), r.unpack()) {
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
	type entry struct {
		k   requestKey
		rec requestRecord
	}
	var moved []entry // records that no longer pack, put in long after its walk
	for p, r := range t.short {
		rec := r.unpack()
		old := rec
		if edit(&rec) {
			delete(t.short, p)
			if dropped != nil {
				q := p // only a dropped record's key escapes
				dropped(rec, q.unpack)
			}
		} else if rec != old {
			if r, ok := packRecord(rec); ok {
				t.short[p] = r
			} else {
				delete(t.short, p)
				moved = append(moved, entry{p.unpack(), rec})
			}
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
	for _, e := range moved {
		t.long[e.k] = e.rec
	}
}
