//! Smoke test of `disturb`: a tiny run of each case, checking that the disturbance happened
//! (injected 500s, requests given up and seen as dropped by the layer, 503s honoured, the
//! cheap phase) and that the JSON holds the traces and verdicts; never how fast the limit
//! comes back (that is the machine's, and measured).

use std::process::Command;

use serde_json::Value;

fn u(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("`{field}` is not a u64 in {v}"))
}

#[test]
fn each_case_disturbs_its_run_and_not_the_control() {
    let dir = std::env::temp_dir().join(format!("surgepool-disturb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let traces = dir.join("traces");
    let output = Command::new(env!("CARGO_BIN_EXE_surgepool-lab"))
        .arg("disturb")
        .args(["--clients", "8", "--service-ms", "20", "--alloc-kb", "16"])
        .args(["--before-s", "1.5", "--during-s", "0.5", "--after-s", "3"])
        .args(["--server-threads", "1"])
        .arg("--json")
        .arg(&json)
        .arg("--trace-limit")
        .arg(&traces)
        .output()
        .expect("the lab binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "disturb failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("goals, this run:"), "{stdout}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cases = doc["cases"].as_array().expect("cases");
    let names: Vec<&str> = cases.iter().map(|c| c["case"].as_str().unwrap()).collect();
    assert_eq!(names, ["warmup", "retry-after", "errors", "disconnects"]);
    for c in cases {
        let name = c["case"].as_str().unwrap();
        // One sample per 50 ms of the run, and one at its start: 4.5 s, or 5 s with a
        // disturbance that lasts.
        let samples = if name == "errors" || name == "disconnects" {
            101
        } else {
            91
        };
        for run in ["control", "disturbed"] {
            let limits = c[run]["limits"].as_array().expect("limits");
            assert_eq!(limits.len(), samples, "{name} {run}");
            assert!(
                limits.iter().all(|l| l.as_u64().unwrap() >= 1),
                "{name} {run}"
            );
            assert!(u(&c[run], "ok") > 0, "{name} {run}: nothing served");
            assert_eq!(u(&c[run], "failed"), 0, "{name} {run}");
        }
        assert!(c["verdict"]["reference"].as_f64().unwrap() >= 1.0, "{name}");
        assert!(c["met"].is_boolean(), "{name}");
        // Only the errors case injects failures, only in its disturbed run.
        let injected = u(&c["disturbed"], "errors_5xx");
        assert_eq!(u(&c["control"], "errors_5xx"), 0, "{name}");
        assert_eq!(injected > 0, name == "errors", "{name}: {injected} 500s");
        // Only the disconnects case gives up on requests: its client 0 leaves at 10 ms on
        // 20 ms requests during the half second.
        let gave_up = u(&c["disturbed"], "gave_up");
        assert_eq!(
            gave_up > 0,
            name == "disconnects",
            "{name}: {gave_up} given up"
        );
        assert_eq!(u(&c["control"], "gave_up"), 0, "{name}");
        // The layer saw both as drops, and nothing else as one.
        let dropped = u(&c["disturbed"], "limiter_dropped");
        let expect_drops = name == "errors" || name == "disconnects";
        assert_eq!(dropped > 0, expect_drops, "{name}: {dropped} dropped");
        assert_eq!(u(&c["control"], "limiter_dropped"), 0, "{name}");
        // Each run's limit decisions went to a file of its own: its windows, from slow
        // start's first doubling on.
        for run in ["control", "disturbed"] {
            let log = std::fs::read_to_string(traces.join(format!("{name}-{run}.log")))
                .unwrap_or_else(|e| panic!("{name} {run}: no trace: {e}"));
            assert!(log.lines().count() >= 2, "{name} {run}: {log}");
            assert!(
                log.lines()
                    .all(|l| l.starts_with("t_s=") && l.contains(" limit=")),
                "{name} {run}: {log}"
            );
        }
    }
    // The warm-up's first 1.5 s went to /hello, which is not counted; the control's to /work.
    let first = |run: &Value| -> u64 {
        run["ok_per_bin"].as_array().unwrap()[..30]
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum()
    };
    assert_eq!(first(&cases[0]["disturbed"]), 0);
    assert!(first(&cases[0]["control"]) > 0);
    // The limit starts at 2 below 8 clients, so the retry-after run saw 503s, and its clients,
    // waiting a second or more after each, were refused far less often than the control's.
    let retry = &cases[1];
    assert!(u(&retry["disturbed"], "shed") > 0);
    assert!(u(&retry["disturbed"], "shed") < u(&retry["control"], "shed"));
    let _ = std::fs::remove_dir_all(&dir);
}
