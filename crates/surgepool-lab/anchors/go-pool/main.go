// Command gopool is the Go anchor for surgepool-lab's `overload` experiment (sleep work):
// a worker pool as a Go engineer would write it by hand (a fixed set of worker goroutines
// reading a buffered channel, a non-blocking send that rejects when the channel is full),
// loaded by the lab's open-loop schedule and measured the way the lab measures a strategy.
//
// Standard library only. See README.md for what matches the lab and what does not.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/bits"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The lab's open-loop generator (crates/surgepool-lab/src/open_loop.rs).
const (
	// The shortest sleep between two hand-overs (the generator never spins).
	minSleep = 100 * time.Microsecond
	// Never sleep longer than this.
	maxSleep = 2 * time.Millisecond
	// How often the time is re-read while handing over a burst of due requests.
	burstCheck = 1024
)

// One write per 4 KiB page makes the whole allocation resident (work.rs: PAGE).
const page = 4096

// Latencies are recorded in microseconds, from 1 µs to one hour (the lab's recorder).
const maxLatencyUs = 3_600_000_000

// RSS is sampled 20 times a second, as the lab does (rss.rs: SAMPLE_EVERY).
const rssEvery = 50 * time.Millisecond

// Histogram shards: worker i records into shard i % shards.
const shards = 8

type config struct {
	rps           float64
	duration      time.Duration
	service       time.Duration
	allocKB       int
	workers       int
	queue         int
	slo           time.Duration
	drain         time.Duration
	json          bool
	gomaxprocs    int
	lockGenerator bool
}

func parseFlags() config {
	var c config
	var rps int64
	flag.Int64Var(&rps, "rps", 200000, "offered requests per second (open loop)")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "how long arrivals go on")
	flag.DurationVar(&c.service, "service", 20*time.Millisecond, "service time per request (sleep)")
	flag.IntVar(&c.allocKB, "alloc-kb", 500, "allocation per request, KiB (x1024 bytes)")
	flag.IntVar(&c.workers, "workers", 1024, "worker goroutines")
	flag.IntVar(&c.queue, "queue", 64, "buffered channel slots; a full channel rejects the arrival")
	flag.DurationVar(&c.slo, "slo", 0, "latency SLO from intended arrival (0: 3 x -service)")
	flag.DurationVar(&c.drain, "drain", 3*time.Second, "how long accepted work may finish after arrivals stop (the lab's quick preset: 3s)")
	flag.BoolVar(&c.json, "json", false, "print one JSON object on stdout at the end")
	flag.IntVar(&c.gomaxprocs, "gomaxprocs", 0, "GOMAXPROCS (0: Go's default)")
	flag.BoolVar(&c.lockGenerator, "lock-generator", false, "run the generator goroutine with runtime.LockOSThread")
	flag.Parse()
	if flag.NArg() != 0 {
		fail("unexpected arguments: %v", flag.Args())
	}
	c.rps = float64(rps)
	if c.slo == 0 {
		c.slo = 3 * c.service
	}
	switch {
	case rps < 1:
		fail("-rps must be at least 1, got %d", rps)
	case c.duration <= 0 || c.duration > time.Hour:
		fail("-duration must be above 0 and at most 1h, got %v", c.duration)
	case c.service <= 0 || c.service > time.Minute:
		fail("-service must be above 0 and at most 1m, got %v", c.service)
	case c.allocKB < 0 || c.allocKB > 1<<20:
		fail("-alloc-kb must be between 0 and 1048576, got %d", c.allocKB)
	case c.workers < 1:
		fail("-workers must be at least 1, got %d", c.workers)
	case c.queue < 0:
		fail("-queue must be at least 0, got %d", c.queue)
	case c.slo < 0 || c.slo > time.Hour:
		fail("-slo must be between 0 and 1h, got %v", c.slo)
	case c.drain < 0 || c.drain > 10*time.Minute:
		fail("-drain must be between 0 and 10m, got %v", c.drain)
	case c.gomaxprocs < 0:
		fail("-gomaxprocs must be at least 0, got %d", c.gomaxprocs)
	}
	return c
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gopool: "+format+"\n", args...)
	os.Exit(2)
}

// job is one request: its intended arrival, as an offset from the process's epoch on the
// monotonic clock (8 bytes through the channel instead of a time.Time's 24).
type job struct {
	intended time.Duration
}

// ---- latency histogram ----------------------------------------------------------------

// A log-linear histogram of microseconds: values below 2048 exactly, above that 1024
// buckets per power of two, so a bucket's width is at most 1/1024 of its values (the
// lab's hdrhistogram keeps 3 significant digits: 1/1000).
const (
	subBits  = 10
	sub      = 1 << subBits
	nBuckets = 2*sub + (64-subBits-2)*sub
)

func bucketIndex(v uint64) int {
	if v < 2*sub {
		return int(v)
	}
	shift := bits.Len64(v) - (subBits + 1) // v>>shift is in [sub, 2*sub)
	return 2*sub + (shift-1)*sub + int(v>>shift) - sub
}

// bucketHigh is the largest value that lands in bucket i (hdrhistogram's "highest
// equivalent value", which is what its value_at_quantile reports).
func bucketHigh(i int) uint64 {
	if i < 2*sub {
		return uint64(i)
	}
	k := i - 2*sub
	shift := uint(k/sub + 1)
	low := uint64(k%sub+sub) << shift
	return low + (1 << shift) - 1
}

type histogram struct {
	counts []uint64
	total  uint64
	sum    uint64
	max    uint64
}

func newHistogram() *histogram {
	return &histogram{counts: make([]uint64, bucketIndex(maxLatencyUs)+1)}
}

func (h *histogram) record(us uint64) {
	h.counts[bucketIndex(us)]++
	h.total++
	h.sum += us
	if us > h.max {
		h.max = us
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.sum += o.sum
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile is hdrhistogram's value_at_quantile: the highest equivalent value of the bucket
// holding the ceil(q × total)-th value (at least the first), capped at the largest value.
func (h *histogram) quantile(q float64) uint64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := bucketHigh(i)
			if v > h.max {
				v = h.max
			}
			return v
		}
	}
	return h.max
}

// micros is the lab's `micros`: whole microseconds, clamped to [1 µs, 1 h].
func micros(d time.Duration) uint64 {
	us := d.Microseconds()
	if us < 1 {
		return 1
	}
	if us > maxLatencyUs {
		return maxLatencyUs
	}
	return uint64(us)
}

// ---- recorder ---------------------------------------------------------------------------

// shard holds the outcomes recorded by the workers that share it. Once closed (the drain's
// deadline passed) nothing more is recorded: work still running then counts as cancelled,
// as the lab counts work its shutdown drops.
type shard struct {
	mu        sync.Mutex
	closed    bool
	started   uint64
	completed uint64
	withinSLO uint64
	hist      *histogram
	_         [64]byte // keep neighbouring shards' locks off one cache line
}

type recorder struct {
	shards [shards]shard
	sloUs  uint64
}

func newRecorder(slo time.Duration) *recorder {
	r := &recorder{sloUs: micros(slo)}
	for i := range r.shards {
		r.shards[i].hist = newHistogram()
	}
	return r
}

func (r *recorder) start(worker int) {
	s := &r.shards[worker%shards]
	s.mu.Lock()
	s.started++
	s.mu.Unlock()
}

func (r *recorder) complete(worker int, latency time.Duration) {
	us := micros(latency)
	s := &r.shards[worker%shards]
	s.mu.Lock()
	if !s.closed {
		s.completed++
		if us <= r.sloUs {
			s.withinSLO++
		}
		s.hist.record(us)
	}
	s.mu.Unlock()
}

type totals struct {
	started, completed, withinSLO uint64
	hist                          *histogram
}

// close stops recording and returns what was recorded until now.
func (r *recorder) close() totals {
	t := totals{hist: newHistogram()}
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		s.closed = true
		t.started += s.started
		t.completed += s.completed
		t.withinSLO += s.withinSLO
		t.hist.merge(s.hist)
		s.mu.Unlock()
	}
	return t
}

// ---- the work ---------------------------------------------------------------------------

// work is the lab's WorkKind::Sleep: allocate n zeroed bytes, write one byte per 4 KiB page
// so all of it is resident, sleep for the service time holding the buffer, then drop it.
func work(n int, service time.Duration) {
	buf := make([]byte, n)
	for i := 0; i < n; i += page {
		buf[i] = 1
	}
	time.Sleep(service)
	// Held for the whole service time, like a request body a handler works on.
	runtime.KeepAlive(buf)
}

func worker(id int, jobs <-chan job, epoch time.Time, allocBytes int, service time.Duration, rec *recorder, wg *sync.WaitGroup) {
	defer wg.Done()
	for j := range jobs {
		rec.start(id)
		work(allocBytes, service)
		rec.complete(id, time.Since(epoch)-j.intended)
	}
}

// ---- the open-loop generator ------------------------------------------------------------

type loadReport struct {
	offered, scheduled, accepted, rejected uint64
	finalLag                               time.Duration
	wakeups                                uint64
	// The longest a sleep overran what it asked for.
	maxOversleep time.Duration
}

// generate is open_loop.rs's Schedule::run: request seq is due at start + seq/rate and is
// handed over (here: offered to the channel) with that intended time; the generator sleeps
// at least minSleep and at most maxSleep between hand-overs and then hands over everything
// that is due. Arrivals stop at start + duration. Times are offsets from epoch.
func generate(c config, epoch time.Time, jobs chan<- job) loadReport {
	start := time.Since(epoch)
	since := func() time.Duration { return time.Since(epoch) - start }
	scheduled := uint64(math.Round(c.rps * c.duration.Seconds()))
	periodNs := 1e9 / c.rps
	end := c.duration
	intended := func(seq uint64) time.Duration {
		return time.Duration(uint64(float64(seq) * periodNs))
	}
	var r loadReport
	r.scheduled = scheduled
	submit := func(at time.Duration) {
		select {
		case jobs <- job{intended: start + at}:
			r.accepted++
		default:
			r.rejected++
		}
	}
	var seq uint64
schedule:
	for seq < scheduled {
		now := since()
		if now >= end {
			break
		}
		r.wakeups++
		// Everything due by now goes out in one burst, each with its own intended time.
		due := uint64(math.Floor(now.Seconds()*c.rps)) + 1
		if due > scheduled {
			due = scheduled
		}
		for seq < due {
			at := intended(seq)
			submit(at)
			seq++
			if seq%burstCheck == 0 {
				now := since()
				r.finalLag = nonNegative(now - at)
				if now >= end {
					break schedule
				}
			}
		}
		r.finalLag = nonNegative(since() - intended(seq-1))
		wait := nonNegative(intended(seq) - since())
		if wait < minSleep {
			wait = minSleep
		}
		if wait > maxSleep {
			wait = maxSleep
		}
		asked := since() + wait
		time.Sleep(wait)
		if over := since() - asked; over > r.maxOversleep {
			r.maxOversleep = over
		}
	}
	r.offered = seq
	return r
}

func nonNegative(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}

// ---- RSS ----------------------------------------------------------------------------------

// rssBytes reads resident pages from /proc/self/statm, as the lab does.
func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}

// vmHWM is the kernel's own peak RSS (VmHWM in /proc/self/status), bytes.
func vmHWM() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "VmHWM:") {
			rest := strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(rest, "kB")), 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}

type rssSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func startRSS() *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	s.peak.Store(rssBytes())
	go func() {
		defer close(s.done)
		t := time.NewTicker(rssEvery)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				if b := rssBytes(); b > s.peak.Load() {
					s.peak.Store(b)
				}
			}
		}
	}()
	return s
}

func (s *rssSampler) finish() uint64 {
	close(s.stop)
	<-s.done
	if b := rssBytes(); b > s.peak.Load() {
		s.peak.Store(b)
	}
	return s.peak.Load()
}

// ---- the run and its report ---------------------------------------------------------------

type latencyMs struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// result uses the lab's StrategyResult field names where a field means the same thing.
type result struct {
	Name              string    `json:"name"`
	Config            string    `json:"config"`
	AskedRps          float64   `json:"asked_rps"`
	DurationS         float64   `json:"duration_s"`
	ServiceMs         float64   `json:"service_ms"`
	AllocKB           int       `json:"alloc_kb"`
	Workers           int       `json:"workers"`
	Queue             int       `json:"queue"`
	DrainS            float64   `json:"drain_s"`
	Scheduled         uint64    `json:"scheduled"`
	Offered           uint64    `json:"offered"`
	AchievedRps       float64   `json:"achieved_rps"`
	Accepted          uint64    `json:"accepted"`
	Rejected          uint64    `json:"rejected"`
	Completed         uint64    `json:"completed"`
	Failed            uint64    `json:"failed"`
	Shed              uint64    `json:"shed"`
	Cancelled         uint64    `json:"cancelled"`
	AcceptedNotRunYet uint64    `json:"cancelled_before_start"`
	Lost              uint64    `json:"lost"`
	WithinSLO         uint64    `json:"within_slo"`
	SloMs             float64   `json:"slo_ms"`
	RanS              float64   `json:"ran_s"`
	DrainedS          float64   `json:"drained_s"`
	GoodputRps        float64   `json:"goodput_rps"`
	SloGoodputRps     float64   `json:"slo_goodput_rps"`
	LatencyMs         latencyMs `json:"latency_ms"`
	PeakRssBytes      uint64    `json:"peak_rss_bytes"`
	PeakRssMB         float64   `json:"peak_rss_mb"`
	VmHWMBytes        uint64    `json:"vm_hwm_bytes"`
	GeneratorLagMs    float64   `json:"generator_lag_ms"`
	GeneratorWakeups  uint64    `json:"generator_wakeups"`
	GeneratorOverMs   float64   `json:"generator_max_oversleep_ms"`
	GeneratorLocked   bool      `json:"generator_locked_os_thread"`
	Gomaxprocs        int       `json:"gomaxprocs"`
	NumCPU            int       `json:"num_cpu"`
	GoVersion         string    `json:"go_version"`
	GCCycles          uint32    `json:"gc_cycles"`
	CPUUserS          float64   `json:"cpu_user_s"`
	CPUSysS           float64   `json:"cpu_sys_s"`
	MinorFaults       int64     `json:"minor_faults"`
	AccountingNotes   []string  `json:"accounting_notes"`
}

func ms(us uint64) float64 { return float64(us) / 1000 }

func main() {
	c := parseFlags()
	if c.gomaxprocs > 0 {
		runtime.GOMAXPROCS(c.gomaxprocs)
	}
	allocBytes := c.allocKB * 1024
	rec := newRecorder(c.slo)
	jobs := make(chan job, c.queue)
	rss := startRSS()

	epoch := time.Now()
	var wg sync.WaitGroup
	wg.Add(c.workers)
	for i := 0; i < c.workers; i++ {
		go worker(i, jobs, epoch, allocBytes, c.service, rec, &wg)
	}

	// The generator is a goroutine of its own (optionally locked to an OS thread); the main
	// goroutine waits for it, as the lab's child joins its generator thread. Its schedule
	// starts when it starts running.
	loadCh := make(chan loadReport, 1)
	go func() {
		if c.lockGenerator {
			runtime.LockOSThread()
		}
		loadCh <- generate(c, epoch, jobs)
	}()
	load := <-loadCh

	// Drain: accepted work may finish for up to c.drain; whatever is left then is cancelled.
	drainStarted := time.Now()
	close(jobs)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	timer := time.NewTimer(c.drain)
	select {
	case <-finished:
		timer.Stop()
	case <-timer.C:
	}
	drained := time.Since(drainStarted)
	t := rec.close()
	peak := rss.finish()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)

	// As the lab: the arrivals' nominal duration plus the time the drain took.
	ran := c.duration + drained
	r := result{
		Name: "go_pool",
		Config: fmt.Sprintf("Go: %d worker goroutines, buffered channel of %d, non-blocking send (full: rejected), no queue timeout",
			c.workers, c.queue),
		AskedRps:         c.rps,
		DurationS:        c.duration.Seconds(),
		ServiceMs:        float64(c.service) / float64(time.Millisecond),
		AllocKB:          c.allocKB,
		Workers:          c.workers,
		Queue:            c.queue,
		DrainS:           c.drain.Seconds(),
		Scheduled:        load.scheduled,
		Offered:          load.offered,
		AchievedRps:      float64(load.offered) / c.duration.Seconds(),
		Accepted:         load.accepted,
		Rejected:         load.rejected,
		Completed:        t.completed,
		WithinSLO:        t.withinSLO,
		SloMs:            float64(rec.sloUs) / 1000,
		RanS:             ran.Seconds(),
		DrainedS:         drained.Seconds(),
		GoodputRps:       float64(t.completed) / ran.Seconds(),
		SloGoodputRps:    float64(t.withinSLO) / ran.Seconds(),
		PeakRssBytes:     peak,
		PeakRssMB:        float64(peak) / 1e6,
		VmHWMBytes:       vmHWM(),
		GeneratorLagMs:   float64(load.finalLag) / float64(time.Millisecond),
		GeneratorWakeups: load.wakeups,
		GeneratorOverMs:  float64(load.maxOversleep) / float64(time.Millisecond),
		GeneratorLocked:  c.lockGenerator,
		Gomaxprocs:       runtime.GOMAXPROCS(0),
		NumCPU:           runtime.NumCPU(),
		GoVersion:        runtime.Version(),
		GCCycles:         ms0.NumGC,
		CPUUserS:         time.Duration(ru.Utime.Nano()).Seconds(),
		CPUSysS:          time.Duration(ru.Stime.Nano()).Seconds(),
		MinorFaults:      ru.Minflt,
		AccountingNotes:  []string{},
	}
	// Accepted and not completed when the drain ended: cancelled (the lab's shutdown drops
	// them; here the process exits with them). Of those, the ones no worker had taken yet.
	if t.completed <= load.accepted {
		r.Cancelled = load.accepted - t.completed
	}
	if t.started <= load.accepted {
		r.AcceptedNotRunYet = load.accepted - t.started
	}
	// The lab's identities; `lost` is whatever they leave over.
	if d := absDiff(r.Offered, r.Accepted+r.Rejected); d != 0 {
		r.Lost += d
		r.AccountingNotes = append(r.AccountingNotes, fmt.Sprintf("offered %d != accepted %d + rejected %d", r.Offered, r.Accepted, r.Rejected))
	}
	if d := absDiff(r.Accepted, r.Completed+r.Failed+r.Shed+r.Cancelled); d != 0 {
		r.Lost += d
		r.AccountingNotes = append(r.AccountingNotes, fmt.Sprintf("accepted %d != completed + failed + shed + cancelled = %d", r.Accepted, r.Completed+r.Failed+r.Shed+r.Cancelled))
	}
	if t.completed > t.started {
		r.Lost += t.completed - t.started
		r.AccountingNotes = append(r.AccountingNotes, fmt.Sprintf("completed %d > started %d", t.completed, t.started))
	}
	if h := t.hist; h.total > 0 {
		r.LatencyMs = latencyMs{
			Mean: float64(h.sum) / float64(h.total) / 1000,
			P50:  ms(h.quantile(0.50)),
			P99:  ms(h.quantile(0.99)),
			P999: ms(h.quantile(0.999)),
			Max:  ms(h.max),
		}
	}

	summary(os.Stderr, &r)
	if c.json {
		enc := json.NewEncoder(os.Stdout)
		if err := enc.Encode(&r); err != nil {
			fail("writing JSON: %v", err)
		}
	}
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

func generatorKind(locked bool) string {
	if locked {
		return "locked to an OS thread"
	}
	return "plain goroutine"
}

func summary(w *os.File, r *result) {
	fmt.Fprintf(w, "gopool: %s\n", r.Config)
	fmt.Fprintf(w, "  load       %.0f req/s asked for %.1f s: scheduled %d, offered %d (%.0f/s achieved)\n",
		r.AskedRps, r.DurationS, r.Scheduled, r.Offered, r.AchievedRps)
	fmt.Fprintf(w, "  generator  %s: lag at the end %.2f ms, %d wake-ups (mean %.0f µs apart), longest oversleep %.1f ms\n",
		generatorKind(r.GeneratorLocked), r.GeneratorLagMs, r.GeneratorWakeups,
		1e6*r.DurationS/math.Max(1, float64(r.GeneratorWakeups)), r.GeneratorOverMs)
	fmt.Fprintf(w, "  work       sleep %.0f ms holding %d KiB; SLO %.1f ms from intended arrival\n", r.ServiceMs, r.AllocKB, r.SloMs)
	fmt.Fprintf(w, "  requests   accepted %d, rejected %d, completed %d (within SLO %d), cancelled %d (of which never started %d), lost %d\n",
		r.Accepted, r.Rejected, r.Completed, r.WithinSLO, r.Cancelled, r.AcceptedNotRunYet, r.Lost)
	fmt.Fprintf(w, "  goodput    %.0f/s, SLO goodput %.0f/s (over ran_s = %.1f s arrivals + %.3f s drain)\n",
		r.GoodputRps, r.SloGoodputRps, r.DurationS, r.DrainedS)
	fmt.Fprintf(w, "  latency    mean %.1f ms, p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms, max %.1f ms\n",
		r.LatencyMs.Mean, r.LatencyMs.P50, r.LatencyMs.P99, r.LatencyMs.P999, r.LatencyMs.Max)
	fmt.Fprintf(w, "  memory     peak RSS %.0f MB (sampled every %v), VmHWM %.0f MB; %d GC cycles, %d minor page faults\n",
		r.PeakRssMB, rssEvery, float64(r.VmHWMBytes)/1e6, r.GCCycles, r.MinorFaults)
	fmt.Fprintf(w, "  runtime    %s, GOMAXPROCS %d, %d CPUs; process CPU %.2f s user + %.2f s system\n",
		r.GoVersion, r.Gomaxprocs, r.NumCPU, r.CPUUserS, r.CPUSysS)
	for _, n := range r.AccountingNotes {
		fmt.Fprintf(w, "  ACCOUNTING %s\n", n)
	}
}
