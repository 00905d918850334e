//! Smoke test of `surgepool-lab overload`: a tiny run of all four strategies (each in its
//! own child process), checking the JSON's shape and its accounting identities. It asserts
//! nothing about speed: on a loaded CI machine any strategy may complete fewer requests,
//! but every request must still be accounted for.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

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
fn tiny_overload_run_accounts_for_every_request() {
    let dir = scratch_dir("overload-smoke");
    let json = dir.join("overload.json");
    let report = dir.join("report");
    let output = Command::new(env!("CARGO_BIN_EXE_surgepool-lab"))
        .args([
            "overload",
            "--duration",
            "1",
            "--rps",
            "200",
            "--service-ms",
            "5",
        ])
        .args(["--alloc-kb", "16", "--drain", "2", "--mem-cap-gb", "2"])
        .arg("--json")
        .arg(&json)
        .arg("--report")
        .arg(&report)
        .output()
        .expect("the lab binary runs");
    assert!(
        output.status.success(),
        "overload failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("goodput/s"), "no table on stdout: {stdout}");

    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let scenario = &doc["scenario"];
    assert_eq!(scenario["work"], "sleep");
    assert_eq!(u(scenario, "offered_rps"), 200);
    assert_eq!(u(scenario, "service_ms"), 5);
    assert_eq!(u(scenario, "alloc_kb"), 16);

    let strategies = doc["strategies"]
        .as_array()
        .expect("strategies is an array");
    let names: Vec<&str> = strategies
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["naive", "fixed", "tower", "adaptive"]);
    for s in strategies {
        let name = s["name"].as_str().unwrap();
        let offered = u(s, "offered");
        assert!(offered > 0, "{name} offered nothing");
        assert_eq!(
            offered,
            u(s, "accepted") + u(s, "rejected"),
            "{name}: offered != accepted + rejected"
        );
        assert_eq!(
            u(s, "accepted"),
            u(s, "completed") + u(s, "failed") + u(s, "shed") + u(s, "cancelled") + u(s, "lost"),
            "{name}: accepted != completed + failed + shed + cancelled + lost"
        );
        assert_eq!(
            u(s, "lost"),
            0,
            "{name} lost requests: {}",
            s["accounting_notes"]
        );
        assert_eq!(
            s["stopped_at_cap"], false,
            "{name} hit a 2 GB cap on a tiny run"
        );
        assert!(u(s, "peak_rss_bytes") > 0, "{name}: no RSS measured");
        assert!(s["achieved_rps"].as_f64().unwrap() > 0.0);
        for field in ["mean", "p50", "p99", "p999", "max"] {
            assert!(
                s["latency_ms"][field].is_number(),
                "{name}: latency_ms.{field}"
            );
        }
        if u(s, "completed") > 0 {
            // Latency includes at least the service time (5 ms), measured from the
            // intended arrival.
            assert!(
                s["latency_ms"]["p50"].as_f64().unwrap() >= 5.0,
                "{name}: p50 below service time"
            );
        }
        assert!(
            !s["series"].as_array().unwrap().is_empty(),
            "{name}: no time series"
        );
        // SLO goodput: the SLO defaults to 3 x the service time, and counts a subset of the
        // completions.
        assert_eq!(s["slo_ms"].as_f64(), Some(15.0), "{name}: slo_ms");
        assert!(
            u(s, "within_slo") <= u(s, "completed"),
            "{name}: within_slo"
        );
        let slo_goodput = s["slo_goodput_rps"].as_f64().expect("slo_goodput_rps");
        assert!(
            slo_goodput <= s["goodput_rps"].as_f64().unwrap() + 1e-9,
            "{name}"
        );
        assert_eq!(
            s["phases"].as_array().map(Vec::len),
            Some(2),
            "{name}: phases"
        );
    }
    assert!(stdout.contains("SLO goodput/s"), "no SLO column: {stdout}");
    assert!(
        !stdout.contains("issue"),
        "goal lines name issues: {stdout}"
    );

    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(html.contains("<svg"));
    assert!(html.contains("adaptive"));
    // The SLO line on the latency charts.
    assert!(html.contains("SLO 15 ms"), "no SLO line in the report");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_strategy_over_the_memory_cap_is_stopped_and_reported() {
    let dir = scratch_dir("overload-cap");
    let json = dir.join("cap.json");
    // Naive spawning of 2 MiB requests that sleep 2 s at 400/s needs ~1.6 GB; the cap is
    // 0.2 GB, so the parent must kill it and say so.
    let output = Command::new(env!("CARGO_BIN_EXE_surgepool-lab"))
        .args([
            "overload",
            "--strategies",
            "naive",
            "--duration",
            "3",
            "--rps",
            "400",
        ])
        .args(["--service-ms", "2000", "--alloc-kb", "2048", "--drain", "1"])
        .args(["--mem-cap-gb", "0.2"])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("the lab binary runs");
    assert!(
        output.status.success(),
        "overload failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let s = &doc["strategies"][0];
    assert_eq!(s["stopped_at_cap"], true, "{s}");
    assert!(s["stopped_at_cap_after_s"].as_f64().unwrap() > 0.0);
    assert!(u(s, "peak_rss_bytes") > 200_000_000);
    assert_eq!(u(s, "offered"), u(s, "accepted") + u(s, "rejected"));
    assert_eq!(
        u(s, "accepted"),
        u(s, "completed") + u(s, "failed") + u(s, "shed") + u(s, "cancelled") + u(s, "lost")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
