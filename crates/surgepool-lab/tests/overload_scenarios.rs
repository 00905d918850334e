//! Smoke tests of `overload --scenario` and the Netflix anchors as strategies: tiny runs,
//! checking the JSON's shape, the halves' identities and what the change must do to latency
//! (a lower bound that holds on any machine), never speed.

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

fn run(dir: &std::path::Path, args: &[&str]) -> (Value, String) {
    let json = dir.join("out.json");
    let output = Command::new(env!("CARGO_BIN_EXE_surgepool-lab"))
        .arg("overload")
        .args(args)
        .args(["--rps", "200", "--service-ms", "5", "--alloc-kb", "16"])
        .args(["--drain", "2", "--mem-cap-gb", "2"])
        .arg("--json")
        .arg(&json)
        .arg("--report")
        .arg(dir.join("report"))
        .output()
        .expect("the lab binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "overload failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let doc = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (doc, stdout)
}

/// The halves split the strategy's figures: offered, completed and within-SLO add up.
fn check_halves(s: &Value) -> (&Value, &Value) {
    let name = s["name"].as_str().unwrap();
    let phases = s["phases"].as_array().expect("phases");
    assert_eq!(phases.len(), 2, "{name}");
    let (first, second) = (&phases[0], &phases[1]);
    assert_eq!(
        (first["name"].as_str(), second["name"].as_str()),
        (Some("first"), Some("second"))
    );
    assert_eq!(first["to_s"], second["from_s"], "{name}: the halves meet");
    assert_eq!(
        u(first, "offered") + u(second, "offered"),
        u(s, "offered"),
        "{name}"
    );
    assert_eq!(
        u(first, "completed") + u(second, "completed"),
        u(s, "completed"),
        "{name}"
    );
    assert_eq!(
        u(first, "within_slo") + u(second, "within_slo"),
        u(s, "within_slo"),
        "{name}"
    );
    assert_eq!(u(s, "lost"), 0, "{name}: {}", s["accounting_notes"]);
    (first, second)
}

#[test]
fn slowdown_triples_the_service_time_of_the_second_half_for_every_strategy() {
    let dir = scratch_dir("overload-slowdown");
    let (doc, stdout) = run(
        &dir,
        &[
            "--scenario",
            "slowdown",
            "--strategies",
            "adaptive,aimd,vegas,gradient2",
            "--duration",
            "1",
            "--sweep",
            "--sweep-limits",
            "2,64",
            "--sweep-duration",
            "1",
            // A generous SLO keeps the slowed requests countable on a busy machine.
            "--slo-ms",
            "1000",
        ],
    );
    assert_eq!(doc["scenario"]["kind"], "slowdown");
    assert_eq!(doc["scenario"]["slo_ms"].as_f64(), Some(1000.0));
    let strategies = doc["strategies"].as_array().unwrap();
    let names: Vec<&str> = strategies
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "adaptive",
            "aimd",
            "vegas",
            "gradient2",
            "fixed_2",
            "fixed_64"
        ]
    );
    for s in strategies {
        let (first, second) = check_halves(s);
        let name = s["name"].as_str().unwrap();
        assert_eq!(s["slo_ms"].as_f64(), Some(1000.0));
        if u(first, "completed") > 0 {
            assert!(
                first["latency_ms"]["p50"].as_f64().unwrap() >= 5.0,
                "{name}"
            );
        }
        // Work that starts after the midpoint takes 3 x 5 ms; everything due in the second
        // half starts after it.
        if u(second, "completed") > 0 {
            assert!(
                second["latency_ms"]["p50"].as_f64().unwrap() >= 15.0,
                "{name}: {second}"
            );
        }
    }
    // The anchors run as pools with a limit of their own.
    for s in &strategies[1..4] {
        assert!(u(s, "final_limit") > 0, "{s}");
        assert!(s["config"].as_str().unwrap().contains("Netflix"), "{s}");
    }
    assert!(stdout.contains("each half"), "no per-half table: {stdout}");
    assert!(
        stdout.contains("heads for the new knee"),
        "no knee goal: {stdout}"
    );
    let html = std::fs::read_to_string(dir.join("report/index.html")).unwrap();
    assert!(html.contains("Sweep: SLO goodput"), "no sweep chart");
    assert!(html.contains("Sweep: p99 latency"), "no sweep p99 chart");
    assert!(
        html.contains("adaptive (settled near"),
        "adaptive not marked on the sweep"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn capacity_drop_runs_a_hog_for_the_second_half_and_reports_both_halves() {
    let dir = scratch_dir("overload-capacity-drop");
    let (doc, _) = run(
        &dir,
        &[
            "--scenario",
            "capacity-drop",
            "--strategies",
            "fixed_4",
            "--duration",
            "1",
        ],
    );
    assert_eq!(doc["scenario"]["kind"], "capacity-drop");
    let s = &doc["strategies"][0];
    check_halves(s);
    // The hog ran and took a core (or, on a 1-core machine, a share of the only one).
    let config = s["config"].as_str().unwrap();
    assert!(config.contains("a hog took"), "{config}");
    // The limit is sampled over time (the report's limit chart).
    let series = s["series"].as_array().unwrap();
    assert!(series.iter().any(|p| p["limit"] == 4), "{s}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A steady sweep runs each fixed limit as long as the strategies it is judged against: it
/// ran 8 s against the quick preset's 15 s, and a fixed limit paid its start over fewer
/// seconds than the adaptive limit its slow start.
#[test]
fn swept_limits_run_as_long_as_the_strategies() {
    let dir = scratch_dir("overload-sweep-length");
    let (doc, _) = run(
        &dir,
        &[
            "--strategies",
            "adaptive",
            // Past the 8 s the quick preset's sweep used to cap it at.
            "--duration",
            "8.5",
            "--sweep",
            "--sweep-limits",
            "4",
        ],
    );
    let strategies = doc["strategies"].as_array().unwrap();
    let scheduled = |name: &str| {
        let s = strategies.iter().find(|s| s["name"] == name).unwrap();
        u(s, "scheduled")
    };
    // 200/s for 8.5 s each: the same arrival schedule for both.
    assert_eq!(scheduled("adaptive"), 1_700);
    assert_eq!(scheduled("fixed_4"), 1_700);
}

/// `--trace-limit DIR`: each child writes its adaptive limit's decisions, a line per measure
/// window, to `DIR/<strategy>.log`; a fixed limit decides nothing and gets no file.
#[test]
fn trace_limit_writes_the_adaptive_decisions() {
    let dir = scratch_dir("overload-trace");
    let traces = dir.join("traces");
    let (doc, _) = run(
        &dir,
        &[
            "--strategies",
            "adaptive,fixed_4",
            "--duration",
            "1",
            "--trace-limit",
            traces.to_str().unwrap(),
        ],
    );
    let adaptive = &doc["strategies"][0];
    assert_eq!(adaptive["name"], "adaptive");
    let log = std::fs::read_to_string(traces.join("adaptive.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    // 200 jobs of 5 ms from 2 slots: slow start's windows at the least.
    assert!(lines.len() >= 2, "{log}");
    for line in &lines {
        for field in [
            "t_s=",
            " limit=",
            " to=",
            " rtt_ms=",
            " goodput=",
            " starting=",
        ] {
            assert!(line.contains(field), "no {field} in {line}");
        }
    }
    // The first window ran under the initial limit (the machine's parallelism), and slow
    // start doubled it.
    let value = |line: &str, key: &str| -> u64 {
        let at = line.find(&format!(" {key}=")).unwrap() + key.len() + 2;
        line[at..].split(' ').next().unwrap().parse().unwrap()
    };
    let (from, to) = (value(lines[0], "limit"), value(lines[0], "to"));
    assert_eq!(to, 2 * from, "{}", lines[0]);
    assert!(
        !traces.join("fixed_4.log").exists(),
        "a file for a limit that decides nothing"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
