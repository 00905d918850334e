//! Smoke test of `surgepool-lab soak`: a few seconds of the mixed workload. It checks the
//! plumbing and the accounting (nothing lost, identities held, the series sampled, the
//! outputs written), never speed or memory figures, which mean nothing in seconds.

use std::process::Command;

use serde_json::Value;

const LAB: &str = env!("CARGO_BIN_EXE_surgepool-lab");

#[test]
fn soak_smoke_run_loses_nothing_and_writes_json_and_report() {
    let dir = std::env::temp_dir().join(format!("surgepool-soak-smoke-{}", std::process::id()));
    let json_path = dir.join("soak.json");
    std::fs::create_dir_all(&dir).unwrap();
    let output = Command::new(LAB)
        .args(["soak", "--seconds", "4", "--json"])
        .arg(&json_path)
        .arg("--report")
        .arg(dir.join("report"))
        .output()
        .expect("run surgepool-lab soak");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "soak failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("async_pool") && stdout.contains("http_layer"),
        "{stdout}"
    );

    let json: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let html = std::fs::read_to_string(dir.join("report/index.html")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(json["lost"].as_u64(), Some(0), "{json}");
    assert_eq!(json["identities_violations"].as_u64(), Some(0), "{json}");
    assert!(json["snapshots_checked"].as_u64().unwrap() > 0, "{json}");
    // Null when too short to fit, but always present.
    assert!(json.get("rss_slope_bytes_per_min").is_some(), "{json}");
    let series = json["series"].as_array().unwrap();
    assert!(series.len() >= 3, "one sample a second: {series:?}");
    for p in series {
        for k in ["rss_bytes", "fds", "threads"] {
            assert!(p[k].as_u64().unwrap() > 0, "{k} in {p}");
        }
    }
    let parts = json["parts"].as_array().unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "async_pool",
            "blocking_pool",
            "pool_churn",
            "http_layer",
            "batcher"
        ]
    );
    for p in parts {
        let n = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{k} in {p}"));
        assert!(n("submitted") > 0, "every part ran: {p}");
        assert_eq!(n("submitted"), n("accepted") + n("rejected"), "{p}");
        assert_eq!(
            n("accepted"),
            n("completed") + n("panicked") + n("failed") + n("cancelled") + n("shed"),
            "{p}"
        );
    }
    assert!(
        n_cycles(parts, "pool_churn") > 1,
        "pools were created in a loop"
    );
    let batcher = &parts[4];
    for k in ["completed", "failed"] {
        // Items committed, and bad items (poison, short output, panic) failed alone.
        assert!(batcher[k].as_u64().unwrap() > 0, "{k} in {batcher}");
    }
    assert_eq!(html.matches("<svg").count(), 4, "RSS, fds, threads, tasks");
}

fn n_cycles(parts: &[Value], name: &str) -> u64 {
    parts.iter().find(|p| p["name"] == name).unwrap()["cycles"]
        .as_u64()
        .unwrap()
}
