package server

import (
	"sync"
	"testing"
	"time"
)

// Every call runs, at once, whether a worker is idle, a new one may be
// kept, or the limit is reached; kept workers end with done.
func TestWorkersRunEveryCall(t *testing.T) {
	done := make(chan struct{})
	w := newWorkers(2, done)
	release := make(chan struct{})
	var wg sync.WaitGroup
	started := make(chan int, 10)
	for i := 0; i < 5; i++ { // more than max, all blocked at once
		wg.Add(1)
		w.run(func() {
			defer wg.Done()
			started <- i
			<-release
		})
	}
	deadline := time.After(10 * time.Second)
	for i := 0; i < 5; i++ {
		select {
		case <-started:
		case <-deadline:
			t.Fatalf("only %d of 5 calls started while all were blocked: a call waited for a worker", i)
		}
	}
	if n := w.n.Load(); n != 2 {
		t.Fatalf("%d kept workers, want the limit 2", n)
	}
	close(release)
	wg.Wait()
	// The kept workers take the next calls.
	for i := 0; i < 20; i++ {
		wg.Add(1)
		w.run(func() { wg.Done() })
	}
	wg.Wait()
	if n := w.n.Load(); n > 2 {
		t.Fatalf("%d kept workers, over the limit 2", n)
	}
	close(done)
	for end := time.Now().Add(10 * time.Second); w.n.Load() != 0; {
		if time.Now().After(end) {
			t.Fatalf("%d kept workers still running after done", w.n.Load())
		}
		time.Sleep(time.Millisecond)
	}
	var nilW *workers
	ran := make(chan struct{})
	nilW.run(func() { close(ran) })
	<-ran
}
