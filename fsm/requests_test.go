package fsm

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/triadlm/triad/proto/fsmpb"
)

// The point of the packed map: the garbage collector has nothing to scan
// in it. A field with a pointer (a string, a slice) added to the key or
// the record would quietly undo that.
func TestPackedRecordsHoldNoPointers(t *testing.T) {
	var hasPointers func(reflect.Type) bool
	hasPointers = func(ty reflect.Type) bool {
		switch ty.Kind() {
		case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
			reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
			return false
		case reflect.Array:
			return hasPointers(ty.Elem())
		case reflect.Struct:
			for i := range ty.NumField() {
				if hasPointers(ty.Field(i).Type) {
					return true
				}
			}
			return false
		}
		return true
	}
	for _, ty := range []reflect.Type{reflect.TypeFor[packedKey](), reflect.TypeFor[packedRecord]()} {
		if hasPointers(ty) {
			t.Errorf("%v holds a pointer: the record map would be scanned by the collector again", ty)
		}
	}
}

func TestRequestTablePacksExactly(t *testing.T) {
	tab := newRequestTable()
	full := strings.Repeat("x", packedKeyChars)
	keys := []struct {
		k     requestKey
		packs bool
	}{
		{requestKey{request: "ab"}, true},
		{requestKey{client: "a", request: "b"}, true},
		{requestKey{client: "ab"}, true},
		{requestKey{client: "ab", request: "A"}, true},
		{requestKey{client: "AB", request: "a"}, true},
		{requestKey{client: packedAlphabet[:26], request: packedAlphabet[26:52]}, true},
		{requestKey{client: packedAlphabet[40:], request: packedAlphabet[:10]}, true},
		{requestKey{request: "ab\x00"}, false},
		{requestKey{client: "a", request: "b\x00"}, false},
		{requestKey{client: "a_b", request: "x"}, false},
		{requestKey{client: "a", request: "b/c"}, false},
		{requestKey{client: "c1", request: strings.Repeat("r", packedKeyChars-2)}, true},  // just fits
		{requestKey{client: "c1", request: strings.Repeat("r", packedKeyChars-1)}, false}, // one over
		{requestKey{request: full}, true},
		{requestKey{client: full}, true},
		{requestKey{request: full + "y"}, false},
		{requestKey{client: full, request: full}, false},
		{requestKey{client: strings.Repeat("c", 128), request: strings.Repeat("r", 128)}, false},
	}
	long := 0
	for i, c := range keys {
		if _, ok := tab.get(c.k); ok {
			t.Fatalf("%q found before it was set", c.k)
		}
		if p, ok := packKey(c.k); ok != c.packs {
			t.Fatalf("%q packs: %v, want %v", c.k, ok, c.packs)
		} else if ok && p.unpack() != c.k {
			t.Fatalf("%q unpacks as %q", c.k, p.unpack())
		}
		if !c.packs {
			long++
		}
		tab.set(c.k, requestRecord{LeaseId: uint64(i + 1)})
	}
	if tab.len() != len(keys) || len(tab.long) != long {
		t.Fatalf("%d records (%d long), want %d (%d long): distinct keys collided", tab.len(), len(tab.long), len(keys), long)
	}
	for i, c := range keys {
		if rec, ok := tab.get(c.k); !ok || rec.LeaseId != uint64(i+1) {
			t.Fatalf("%q: %+v %v, want lease %d", c.k, rec, ok, i+1)
		}
	}
	var got, want []requestKey
	for k, rec := range tab.all() {
		if keys[rec.LeaseId-1].k != k {
			t.Fatalf("all yields %q for the record of %q", k, keys[rec.LeaseId-1].k)
		}
		got = append(got, k)
	}
	for _, c := range keys {
		want = append(want, c.k)
	}
	slices.SortFunc(got, requestKey.less)
	slices.SortFunc(want, requestKey.less)
	if !slices.Equal(got, want) {
		t.Fatalf("all yields %q, want %q", got, want)
	}

	// Every split of random ids of every packable length comes back.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n := rng.IntN(packedKeyChars + 1)
		c := rng.IntN(n + 1)
		b := make([]byte, n)
		for i := range b {
			b[i] = packedAlphabet[rng.IntN(len(packedAlphabet))]
		}
		k := requestKey{client: string(b[:c]), request: string(b[c:])}
		p, ok := packKey(k)
		if !ok || p.unpack() != k {
			t.Fatalf("%q: packs %v, unpacks as %q", k, ok, p.unpack())
		}
	}
}

// A record whose lease id or refusal code does not fit 16 bytes keeps its
// packable key in the second map, and moves back when it fits again.
func TestRequestTableRecordsThatDoNotPack(t *testing.T) {
	for _, rec := range []requestRecord{
		{LeaseId: packedIDLimit - 1, EndedMs: -5, DeniedCode: fsmpb.Code_NO_SEAT, IdleTimeout: true},
		{LeaseId: 0, EndedMs: 1 << 62, DeniedCode: 255},
	} {
		if p, ok := packRecord(rec); !ok || p.unpack() != rec {
			t.Fatalf("%+v: packs %v, unpacks as %+v", rec, ok, p.unpack())
		}
	}
	tab := newRequestTable()
	k := requestKey{client: "c", request: "r"}
	for _, rec := range []requestRecord{{LeaseId: packedIDLimit}, {DeniedCode: 256}, {DeniedCode: -1}} {
		tab.set(k, rec)
		if got, ok := tab.get(k); !ok || got != rec || len(tab.long) != 1 || len(tab.short) != 0 {
			t.Fatalf("%+v: got %+v %v, %d short %d long", rec, got, ok, len(tab.short), len(tab.long))
		}
	}
	tab.set(k, requestRecord{LeaseId: 7})
	if got, _ := tab.get(k); got.LeaseId != 7 || len(tab.long) != 0 || len(tab.short) != 1 {
		t.Fatalf("back to packed: %+v, %d short %d long", got, len(tab.short), len(tab.long))
	}
	// An update that makes a packed record unpackable moves it, once.
	edits := 0
	tab.update(func(rec *requestRecord) bool {
		edits++
		rec.LeaseId = packedIDLimit + 1
		return false
	}, nil)
	if got, ok := tab.get(k); !ok || got.LeaseId != packedIDLimit+1 || edits != 1 || tab.len() != 1 {
		t.Fatalf("after update: %+v %v, %d edits, %d records", got, ok, edits, tab.len())
	}
}

func TestRequestTableUpdate(t *testing.T) {
	tab := newRequestTable()
	long := strings.Repeat("l", 100)
	for i := range 10 {
		tab.set(requestKey{client: "c", request: fmt.Sprint("r", i)}, requestRecord{LeaseId: uint64(i), EndedMs: int64(i)})
		tab.set(requestKey{client: long, request: fmt.Sprint("r", i)}, requestRecord{LeaseId: uint64(100 + i), EndedMs: int64(i)})
	}
	// Odd records move on by 1000 ms; records that ended before 4 go, and
	// the dropped ones report their keys.
	var gone []requestKey
	tab.update(func(rec *requestRecord) bool {
		if rec.EndedMs < 4 {
			return true
		}
		if rec.LeaseId%2 == 1 {
			rec.EndedMs += 1000
		}
		return false
	}, func(rec requestRecord, key func() requestKey) {
		k := key()
		if want := fmt.Sprint("r", rec.EndedMs); k.request != want {
			t.Errorf("dropped record of %q reports key %q", want, k.request)
		}
		gone = append(gone, k)
	})
	if len(gone) != 8 || tab.len() != 12 {
		t.Fatalf("dropped %d (%q), %d left; want 8 and 12", len(gone), gone, tab.len())
	}
	for k, rec := range tab.all() {
		i := int64(rec.LeaseId % 100)
		want := i
		if rec.LeaseId%2 == 1 {
			want += 1000
		}
		if i < 4 || rec.EndedMs != want || k.request != fmt.Sprint("r", i) {
			t.Fatalf("after update %q: %+v, want ended %d", k, rec, want)
		}
	}
}

// BenchmarkGCOverRequestRecords is the collector's cost (one forced
// collection) with 100,000 request records held, packed as the FSM keeps
// them and keyed by two strings as before; the ratio is what counts.
func BenchmarkGCOverRequestRecords(b *testing.B) {
	const n = 100_000
	ids := func(i int) requestKey {
		// The length of the client library's ids (rand.Text).
		return requestKey{client: fmt.Sprintf("C%025d", i%1000), request: fmt.Sprintf("R%025d", i)}
	}
	b.Run("packed", func(b *testing.B) {
		tab := newRequestTable()
		for i := range n {
			tab.set(ids(i), requestRecord{LeaseId: uint64(i + 1)})
		}
		gcLoop(b)
		runtime.KeepAlive(tab)
	})
	b.Run("strings", func(b *testing.B) {
		m := map[requestKey]requestRecord{}
		for i := range n {
			m[ids(i)] = requestRecord{LeaseId: uint64(i + 1)}
		}
		gcLoop(b)
		runtime.KeepAlive(m)
	})
}

func gcLoop(b *testing.B) {
	runtime.GC()
	b.ResetTimer()
	for b.Loop() {
		runtime.GC()
	}
}
