package fsm

import (
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
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
	for _, ty := range []reflect.Type{reflect.TypeFor[packedKey](), reflect.TypeFor[requestRecord]()} {
		if hasPointers(ty) {
			t.Errorf("%v holds a pointer: the record map would be scanned by the collector again", ty)
		}
	}
}

func TestRequestTablePacksExactly(t *testing.T) {
	tab := newRequestTable()
	long := strings.Repeat("x", packedKeyBytes)
	keys := []requestKey{
		{request: "ab"},
		{client: "a", request: "b"},
		{client: "ab"},
		{client: "", request: "ab\x00"},
		{client: "a", request: "b\x00"},
		{client: "c1", request: strings.Repeat("r", packedKeyBytes-2)}, // just fits
		{client: "c1", request: strings.Repeat("r", packedKeyBytes-1)}, // one over: long map
		{request: long}, // fits exactly
		{request: long + "y"},
		{client: long, request: long},
		{client: strings.Repeat("c", 128), request: strings.Repeat("r", 128)},
	}
	for i, k := range keys {
		if _, ok := tab.get(k); ok {
			t.Fatalf("%q found before it was set", k)
		}
		tab.set(k, requestRecord{LeaseId: uint64(i + 1)})
	}
	if tab.len() != len(keys) {
		t.Fatalf("%d records, want %d: distinct keys collided", tab.len(), len(keys))
	}
	if len(tab.long) != 4 {
		t.Fatalf("%d records with long ids, want 4", len(tab.long))
	}
	for i, k := range keys {
		if rec, ok := tab.get(k); !ok || rec.LeaseId != uint64(i+1) {
			t.Fatalf("%q: %+v %v, want lease %d", k, rec, ok, i+1)
		}
	}
	var got []requestKey
	for k, rec := range tab.all() {
		if keys[rec.LeaseId-1] != k {
			t.Fatalf("all yields %q for the record of %q", k, keys[rec.LeaseId-1])
		}
		got = append(got, k)
	}
	slices.SortFunc(got, requestKey.less)
	want := slices.SortedFunc(slices.Values(keys), requestKey.less)
	if !slices.Equal(got, want) {
		t.Fatalf("all yields %q, want %q", got, want)
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
