//! The admin listener: profiles and metrics, on loopback only (refused elsewhere at start,
//! see `config.rs`), never on the public port (seed 001).

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::{header, HeaderValue, StatusCode};
use serde::Deserialize;
use surgepool::{BlockingPool, Limit, SubmitError};
use surgepool_tower::AdmissionLayer;

use crate::state::AppState;

const MAX_PROFILE_SECONDS: u64 = 60;
const PROFILE_HZ: i32 = 99;

/// What the admin routes read.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    state: AppState,
    admission: AdmissionLayer,
    /// One thread, no queue: a profile runs on it for its whole duration, so a second request
    /// while one runs is `Full` → 409. pprof's guard is not `Send`; it lives on this thread.
    profiler: BlockingPool,
}

impl Admin {
    pub(crate) fn new(state: AppState, admission: AdmissionLayer) -> anyhow::Result<Admin> {
        let profiler = BlockingPool::builder()
            .limit(Limit::fixed(1))
            .queue_capacity(0)
            .thread_name("orders-profiler")
            .build()?;
        Ok(Admin {
            state,
            admission,
            profiler,
        })
    }

    pub(crate) fn router(self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/debug/pools", get(pools))
            .route("/debug/pprof/profile", get(profile))
            .route("/debug/pprof/heap", get(heap))
            .with_state(self)
    }

    pub(crate) fn shutdown(&self) {
        self.profiler.close();
    }
}

async fn metrics(State(admin): State<Admin>) -> Response {
    let shared = &admin.state.0;
    let mut out = String::with_capacity(4096);
    shared.metrics.render(&mut out);
    let a = admin.admission.stats();
    let _ = writeln!(out, "orders_admission_admitted_total {}", a.admitted);
    let _ = writeln!(out, "orders_admission_overloaded_total {}", a.overloaded);
    let _ = writeln!(
        out,
        "orders_admission_queue_timeouts_total {}",
        a.queue_timeouts
    );
    let _ = writeln!(out, "orders_admission_timeouts_total {}", a.timeouts);
    let _ = writeln!(out, "orders_admission_queued {}", a.queued);
    let _ = writeln!(out, "orders_admission_limit {}", a.limiter.limit);
    let _ = writeln!(out, "orders_admission_in_flight {}", a.limiter.in_flight);
    shared.storage.metrics(&mut out);
    shared.writer.metrics(&mut out);
    shared.breaker.metrics(&mut out);
    if let Some(c) = &shared.confirmations {
        c.metrics(&mut out);
    }
    let _ = writeln!(
        out,
        "orders_user_loads_total {}",
        shared.user_loads.load(std::sync::atomic::Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "orders_user_cache_entries {}",
        shared.users.entry_count()
    );
    crate::storage::pool_metrics(&mut out, "profiler", &admin.profiler.snapshot());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        out,
    )
        .into_response()
}

async fn pools(State(admin): State<Admin>) -> Json<serde_json::Value> {
    let shared = &admin.state.0;
    let a = admin.admission.stats();
    Json(serde_json::json!({
        "storage": shared.storage.snapshot(),
        "orders": shared.writer.snapshot(),
        "admission": {
            "admitted": a.admitted, "overloaded": a.overloaded,
            "queue_timeouts": a.queue_timeouts, "timeouts": a.timeouts, "queued": a.queued,
            "limit": a.limiter.limit, "in_flight": a.limiter.in_flight,
        },
        "profiler": crate::storage::pool_json(&admin.profiler.snapshot()),
    }))
}

#[derive(Debug, Deserialize)]
struct ProfileQuery {
    seconds: Option<u64>,
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, msg.into()).into_response()
}

async fn profile(State(admin): State<Admin>, Query(query): Query<ProfileQuery>) -> Response {
    let seconds = query.seconds.unwrap_or(30);
    if seconds == 0 || seconds > MAX_PROFILE_SECONDS {
        return text(
            StatusCode::BAD_REQUEST,
            format!("seconds must be between 1 and {MAX_PROFILE_SECONDS}\n"),
        );
    }
    let job = move || record_profile(Duration::from_secs(seconds));
    let handle = match admin.profiler.try_submit(job) {
        Ok(handle) => handle,
        Err(SubmitError::Full(_)) => {
            return text(StatusCode::CONFLICT, "a profile is already running\n")
        }
        Err(_) => return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
    };
    match handle.await {
        Ok(Ok(gz)) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment; filename=\"profile.pb.gz\""),
                ),
            ],
            gz,
        )
            .into_response(),
        Ok(Err(why)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("profiling failed: {why}\n"),
        ),
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("profiler: {err}\n"),
        ),
    }
}

/// Samples every thread's stack at [`PROFILE_HZ`] for `duration` (frame-pointer unwinder),
/// and returns a gzip-compressed pprof protobuf, as `go tool pprof` reads it.
fn record_profile(duration: Duration) -> Result<Vec<u8>, String> {
    use pprof::protos::Message as _;
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(PROFILE_HZ)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(duration);
    let report = guard.report().build().map_err(|e| e.to_string())?;
    drop(guard);
    let profile = report.pprof().map_err(|e| e.to_string())?;
    let mut raw = Vec::with_capacity(profile.encoded_len());
    profile.encode(&mut raw).map_err(|e| e.to_string())?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).map_err(|e| e.to_string())?;
    gz.finish().map_err(|e| e.to_string())
}

/// The live heap, sampled by jemalloc (one sample per 512 KiB allocated on average, see
/// `malloc_conf` in `main.rs`), as a gzip-compressed pprof protobuf.
#[cfg(all(target_os = "linux", feature = "jemalloc"))]
async fn heap() -> Response {
    let Some(ctl) = jemalloc_pprof::PROF_CTL.as_ref() else {
        return no_heap_profile("jemalloc's profiling is not enabled in this process");
    };
    let mut ctl = ctl.lock().await;
    if !ctl.activated() {
        return no_heap_profile("jemalloc's profiling is not active");
    }
    // The dump writes and parses a file: blocking work, kept off the other tasks' thread.
    match tokio::task::block_in_place(|| ctl.dump_pprof()) {
        Ok(gz) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )],
            gz,
        )
            .into_response(),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("heap profile: {e}\n"),
        ),
    }
}

#[cfg(not(all(target_os = "linux", feature = "jemalloc")))]
async fn heap() -> Response {
    no_heap_profile("this build uses the system allocator, whose heap cannot be sampled")
}

fn no_heap_profile(why: &str) -> Response {
    text(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "heap profiling is not available: {why}. It needs jemalloc with profiling \
             enabled (tikv-jemallocator + jemalloc_pprof, Linux builds). Use the CPU profile \
             at /debug/pprof/profile, or /debug/pools for queue depths.\n"
        ),
    )
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    /// In this test binary jemalloc's profiling is off (`malloc_conf` lives in `main.rs`, and
    /// the counting allocator of the hello tests is the global one), so the real handler
    /// takes its 501 branch, which a Linux build of the service never shows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn without_heap_profiling_the_heap_profile_is_a_501_that_says_why() {
        let answer = super::heap().await;
        assert_eq!(answer.status(), 501);
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            text.starts_with("heap profiling is not available: "),
            "{text}"
        );
        assert!(text.contains("/debug/pprof/profile"), "{text}");
    }
}
