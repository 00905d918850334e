//! Smoke test of `surgepool-lab fleet`: a tiny run (about a second of arrivals per row)
//! against the lab's own redis-server, checking the JSON's shape and its accounting. It
//! asserts nothing about speed: only that every accepted job is accounted for, that the
//! local pool alone sheds a spike far above its capacity, and that the overflow sheds none.
//!
//! Without `redis-server` on PATH it prints SKIPPED and passes, except under `CI=true`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn redis_server_on_path() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("redis-server").is_file()))
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("surgepool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn u(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("`{field}` is not a u64 in {v}"))
}

#[test]
fn tiny_fleet_run_accounts_for_every_job() {
    if !redis_server_on_path() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "redis-server is not on PATH, and CI=true requires it"
        );
        eprintln!("tiny_fleet_run_accounts_for_every_job: SKIPPED: redis-server is not on PATH");
        return;
    }
    let dir = scratch_dir("fleet-smoke");
    let json = dir.join("fleet.json");
    let report = dir.join("report");
    // Local capacity: 2 slots × 20 ms = 100 jobs/s, against 1000 jobs/s offered.
    let output = Command::new(env!("CARGO_BIN_EXE_surgepool-lab"))
        .args(["fleet", "--consumers", "2", "--spike-rps", "1000"])
        .args([
            "--spike-secs",
            "1",
            "--slowdown-rps",
            "300",
            "--slowdown-secs",
            "1",
        ])
        .args([
            "--service-ms",
            "20",
            "--local-limit",
            "2",
            "--downstream",
            "8",
        ])
        .args(["--fixed", "16", "--drain-secs", "60"])
        .arg("--json")
        .arg(&json)
        .arg("--report")
        .arg(&report)
        .output()
        .expect("the lab binary runs");
    assert!(
        output.status.success(),
        "fleet failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("goodput/s"), "no table on stdout: {stdout}");

    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["scenario"]["appendfsync"], "everysec");
    let rows = doc["strategies"]
        .as_array()
        .expect("strategies is an array");
    let names: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["scenario"].as_str().unwrap().to_owned(),
                r["strategy"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("spike", "local_only"),
        ("spike", "overflow_adaptive"),
        ("slowdown", "overflow_adaptive"),
        ("slowdown", "overflow_fixed_16"),
    ];
    assert_eq!(
        names,
        expected
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect::<Vec<_>>()
    );
    for r in rows {
        for field in ["jobs_per_s", "slo_goodput_rps"] {
            assert!(r[field].as_f64().is_some(), "`{field}` missing in {r}");
        }
        for q in ["p50", "p99", "max"] {
            assert!(
                r["latency_ms"][q].as_f64().is_some(),
                "latency_ms.{q} missing in {r}"
            );
        }
        let (offered, pushed, shed) = (u(r, "offered"), u(r, "pushed"), u(r, "shed"));
        assert_eq!(
            pushed + shed,
            offered,
            "every offered job is pushed or shed: {r}"
        );
        assert_eq!(pushed, u(r, "local") + u(r, "queued"), "{r}");
        assert_eq!(u(r, "lost"), 0, "lost jobs: {r}");
        // Nothing is killed here, so every pushed job is acked exactly once (or still waits,
        // if the drain time ran out on a very slow machine).
        assert_eq!(
            u(r, "acked") + u(r, "dead") + u(r, "waiting"),
            pushed,
            "{r}"
        );
        assert!(
            !r["series"].as_array().unwrap().is_empty(),
            "no samples: {r}"
        );
        // The consumers are 2 processes, each reporting its own limit.
        let consumers = if r["strategy"] == "local_only" { 0 } else { 2 };
        for sample in r["series"].as_array().unwrap() {
            let limits = sample["limits"].as_array().expect("limits per consumer");
            assert_eq!(limits.len(), consumers, "{sample}");
        }
    }
    assert!(
        doc["scenario"]["consumers_are"]
            .as_str()
            .is_some_and(|s| s.starts_with("processes")),
        "{}",
        doc["scenario"]
    );
    assert!(
        u(&rows[0], "shed") > 0,
        "the local pool alone must shed the spike: {}",
        rows[0]
    );
    assert_eq!(
        u(&rows[1], "shed"),
        0,
        "the overflow sheds nothing: {}",
        rows[1]
    );
    assert!(
        u(&rows[1], "queued") > 0,
        "the spike overflowed into Redis: {}",
        rows[1]
    );
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(html.contains("<svg"), "the report has charts");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad settings are clear errors before anything starts (no redis-server needed: the checks
/// come first), and a huge `--consumers` never starts that many processes.
#[test]
fn bad_fleet_settings_are_clear_errors() {
    for (args, says) in [
        (&["--consumers", "0"][..], "must be at least 1"),
        (&["--consumers", "100000"][..], "--consumers is at most 64"),
        (&["--spike-secs", "NaN"][..], "within 0..3600 seconds"),
        (&["--service-ms", "0"][..], "must be at least 1"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_surgepool-lab"))
            .arg("fleet")
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
