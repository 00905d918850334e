//! CI smoke test of `surgepool-lab shapes`: runs every shape with tiny counts and checks the
//! JSON contract of API.md. It checks shape and sanity, never speed.

use std::process::Command;

use serde_json::Value;

/// Fails on a NaN (serialised as `null` where a number belongs), a negative or an infinite
/// number anywhere in the report.
fn check_numbers(path: &str, v: &Value) {
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap();
            assert!(x.is_finite() && x >= 0.0, "{path} = {x}");
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_numbers(&format!("{path}[{i}]"), item);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                check_numbers(&format!("{path}.{k}"), item);
            }
        }
        _ => {}
    }
}

fn number(row: &Value, field: &str) -> f64 {
    row[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{}: {field} is not a number: {}", row["name"], row[field]))
}

#[test]
fn shapes_smoke_writes_every_row_as_json() {
    let json_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("shapes-smoke-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_surgepool-lab"))
        .args(["shapes", "--smoke", "--json"])
        .arg(&json_path)
        .output()
        .expect("the lab binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "shapes --smoke failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains("serial"), "no table on stdout:\n{stdout}");

    let text = std::fs::read_to_string(&json_path).expect("the JSON file was written");
    let _ = std::fs::remove_file(&json_path);
    let report: Value = serde_json::from_str(&text).expect("valid JSON");
    check_numbers("report", &report);

    let cores = report["machine"]["cores"].as_u64().expect("machine.cores");
    assert!(cores >= 1);
    assert!(report["machine"]["rustc"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert_eq!(report["machine"]["allocator"], "system");

    let rows = report["shapes"].as_array().expect("shapes is an array");
    let required = [
        "serial".to_owned(),
        "spawn_oneshot".to_owned(),
        "spawn_atomic".to_owned(),
        format!("pool_shared_channel_{cores}"),
        "pool_shared_channel_100".to_owned(),
        "pool_shared_channel_1000".to_owned(),
        format!("pool_per_worker_channel_{cores}"),
        "pool_per_worker_channel_100".to_owned(),
        "joinset".to_owned(),
        "spawn_blocking".to_owned(),
        "std_thread_spawn".to_owned(),
        "rayon_spawn".to_owned(),
        "rayon_scope".to_owned(),
        format!("crossbeam_pool_{cores}"),
        "surgepool_pool".to_owned(),
        "surgepool_pool_spawn".to_owned(),
        "surgepool_blocking".to_owned(),
        "pingpong_atomic".to_owned(),
        "pingpong_atomic_batch64".to_owned(),
    ];
    for name in &required {
        let row = rows
            .iter()
            .find(|r| r["name"] == name.as_str())
            .unwrap_or_else(|| panic!("row {name} is missing"));
        assert!(
            row.get("error").is_none(),
            "{name} failed: {}",
            row["error"]
        );
        let ns = &row["ns_per_op"];
        let (min, median, max) = (number(ns, "min"), number(ns, "median"), number(ns, "max"));
        assert!(min <= median && median <= max, "{name}: {ns}");
        number(row, "bytes_per_op");
        number(row, "allocs_per_op");
    }

    let serial = rows.iter().find(|r| r["name"] == "serial").unwrap();
    assert_eq!(number(serial, "bytes_per_op"), 0.0, "serial allocates");
    assert_eq!(number(serial, "allocs_per_op"), 0.0, "serial allocates");
}
