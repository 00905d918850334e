package main

import (
	"testing"
	"time"
)

// Every value lands in a bucket whose range holds it, buckets are contiguous, and a bucket's
// width is at most 1/1024 of its lowest value.
func TestHistogramBuckets(t *testing.T) {
	prevHigh := uint64(0)
	for i := 0; i <= bucketIndex(maxLatencyUs); i++ {
		high := bucketHigh(i)
		low := uint64(0)
		if i > 0 {
			low = prevHigh + 1
		}
		if bucketIndex(low) != i || bucketIndex(high) != i {
			t.Fatalf("bucket %d: [%d, %d] maps to %d, %d", i, low, high, bucketIndex(low), bucketIndex(high))
		}
		if low > 0 && float64(high-low+1) > float64(low)/1024 && high-low > 0 {
			t.Fatalf("bucket %d: [%d, %d] is wider than 1/1024", i, low, high)
		}
		prevHigh = high
	}
	if bucketIndex(maxLatencyUs) >= nBuckets {
		t.Fatalf("index %d out of %d", bucketIndex(maxLatencyUs), nBuckets)
	}
}

func TestQuantiles(t *testing.T) {
	h := newHistogram()
	for v := uint64(1); v <= 100_000; v++ {
		h.record(v)
	}
	for _, q := range []float64{0.5, 0.99, 0.999} {
		want := q * 100_000
		got := float64(h.quantile(q))
		if got < want || got > want*1.001 {
			t.Errorf("q%v: got %v, want %v (+0.1%%)", q, got, want)
		}
	}
	if h.quantile(1) != 100_000 || h.max != 100_000 {
		t.Errorf("max: %d, %d", h.quantile(1), h.max)
	}
}

// Intended times follow the schedule, not the hand-over (open_loop.rs's first test).
func TestIntendedTimesFollowTheSchedule(t *testing.T) {
	jobs := make(chan job, 100)
	epoch := time.Now()
	r := generate(config{rps: 1000, duration: 50 * time.Millisecond}, epoch, jobs)
	close(jobs)
	if r.offered > 50 || r.offered != r.accepted || r.rejected != 0 {
		t.Fatalf("%+v", r)
	}
	var prev time.Duration
	n := 0
	for j := range jobs {
		if n > 0 && j.intended-prev != time.Millisecond {
			t.Fatalf("arrival %d: %v after the previous", n, j.intended-prev)
		}
		prev = j.intended
		n++
	}
	if uint64(n) != r.offered {
		t.Fatalf("%d arrivals, offered %d", n, r.offered)
	}
}
