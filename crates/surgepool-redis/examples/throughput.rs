//! No-op jobs pushed and consumed end to end through one local redis-server of its own, with
//! 2 consumer processes: `cargo run --release -p surgepool-redis --example throughput --
//! [everysec|always] [jobs] [fixed:N|adaptive]`. Prints push rate and end-to-end rate.
//! Measure on an idle machine: other load on the cores changes the figures.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use surgepool::Limit;
use surgepool_redis::server::RedisServer;
use surgepool_redis::{Consumer, Job, Queue};

const CONSUMERS: usize = 2;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Ok(url) = std::env::var("THROUGHPUT_CHILD") {
        return rt.block_on(child(url));
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fsync = args
        .first()
        .cloned()
        .unwrap_or_else(|| "everysec".to_owned());
    let jobs: usize = args.get(1).map_or(Ok(200_000), |s| s.parse())?;
    let limit = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "fixed:1000".to_owned());
    let server = RedisServer::start_with_fsync(&fsync)?;
    let stop = server.dir().join("stop");
    rt.block_on(async {
        let queue = Queue::connect(&server.url(), "bench").await?;
        let start = Instant::now();
        let mut children: Vec<Child> = (0..CONSUMERS)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .env("THROUGHPUT_CHILD", server.url())
                    .env("THROUGHPUT_STOP", &stop)
                    .env("THROUGHPUT_LIMIT", &limit)
                    .spawn()
                    .unwrap()
            })
            .collect();
        let payload = bytes::Bytes::from_static(b"noop");
        for _ in 0..jobs / 1000 {
            queue.push_many(std::iter::repeat_n(payload.clone(), 1000)).await?;
        }
        let pushed_in = start.elapsed();
        loop {
            let f = queue.fleet().await?;
            if f.waiting() == 0 && f.pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let total = start.elapsed();
        std::fs::write(&stop, b"stop")?;
        for c in &mut children {
            c.wait()?;
        }
        let n = (jobs / 1000 * 1000) as f64;
        println!(
            "appendfsync {fsync}, {CONSUMERS} consumer processes, limit {limit}: {n} jobs pushed in {:.2} s ({:.0}/s), pushed and consumed in {:.2} s: {:.0} jobs/s end to end",
            pushed_in.as_secs_f64(),
            n / pushed_in.as_secs_f64(),
            total.as_secs_f64(),
            n / total.as_secs_f64()
        );
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

async fn child(url: String) -> Result<(), Box<dyn std::error::Error>> {
    let stop = PathBuf::from(std::env::var("THROUGHPUT_STOP")?);
    let limit = match std::env::var("THROUGHPUT_LIMIT")?.as_str() {
        "adaptive" => Limit::adaptive(),
        other => Limit::fixed(other.trim_start_matches("fixed:").parse()?),
    };
    let queue = Queue::connect(&url, "bench").await?;
    let consumer = Consumer::builder(queue, |_job: Job| async { Ok::<(), String>(()) })
        .limit(limit)
        .build()?;
    consumer
        .run_until(async move {
            while !stop.exists() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await?;
    Ok(())
}
