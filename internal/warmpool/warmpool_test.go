package warmpool

import (
	"sync"
	"testing"
)

func TestGetWithoutHomesIsAStack(t *testing.T) {
	var p Pool[string]
	if _, ok := p.Get(); ok {
		t.Fatal("Get on an empty pool said ok")
	}
	for _, v := range []string{"a", "b", "c"} {
		p.Put(v)
	}
	for _, want := range []string{"c", "b", "a"} {
		if got, ok := p.Get(); !ok || got != want {
			t.Fatalf("Get = %q, %v; want %q", got, ok, want)
		}
	}
	if len(p.idle) != 0 {
		t.Fatalf("Len = %d after taking every one", len(p.idle))
	}
}

// TestConcurrentUse checks, under -race, that every resource is held by one caller at a time
// and none is lost or doubled.
func TestConcurrentUse(t *testing.T) {
	var p Pool[int]
	const n = 8
	for v := range n {
		p.Put(v)
	}
	var held [n]sync.Mutex
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				sem <- struct{}{}
				v, ok := p.Get()
				if !ok {
					t.Error("Get found none idle while a token was free")
					<-sem
					return
				}
				v = p.Trade(v)
				if !held[v].TryLock() {
					t.Errorf("resource %d handed to two callers", v)
					<-sem
					return
				}
				p.Ran(v)
				held[v].Unlock()
				p.Put(v)
				<-sem
			}
		}()
	}
	wg.Wait()
	seen := map[int]bool{}
	for len(p.idle) > 0 {
		v, _ := p.Get()
		if seen[v] {
			t.Fatalf("resource %d idle twice", v)
		}
		seen[v] = true
	}
	if len(seen) != n {
		t.Fatalf("%d resources idle at the end, want %d", len(seen), n)
	}
}
