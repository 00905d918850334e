//! CI smoke test of `surgepool-lab batch`: small N on SQLite (and PostgreSQL when it is
//! reachable; under `CI=true` it must be), checking the JSON contract of API.md and that
//! every strategy's rows are all in the table, none lost. It checks shape and accounting,
//! never speed.

use std::process::Command;

use serde_json::Value;

fn run(db: &str) -> Value {
    let json_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("batch-smoke-{db}-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_surgepool-lab"))
        .args([
            "batch",
            "--db",
            db,
            "--items",
            "200",
            "--tx-size",
            "50",
            "--sweep",
            "10,50",
            "--light-items",
            "5",
            "--rate",
            "2000",
            "--json",
        ])
        .arg(&json_path)
        .output()
        .expect("the lab binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "batch --db {db} failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains("per_row_autocommit"), "{stdout}");
    let text = std::fs::read_to_string(&json_path).expect("the JSON was written");
    serde_json::from_str(&text).expect("valid JSON")
}

fn check(doc: &Value, db: &str, names: &[&str]) {
    let rows: Vec<&Value> = doc["strategies"]
        .as_array()
        .expect("strategies")
        .iter()
        .filter(|r| r["db"] == db)
        .collect();
    let got: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(got, names, "{db}");
    for r in rows {
        let n = |f: &str| r[f].as_u64().unwrap_or_else(|| panic!("{f} in {r}"));
        assert_eq!(n("lost"), 0, "{r}");
        assert_eq!(n("committed") + n("failed"), n("items"), "{r}");
        assert_eq!(
            n("rows_in_table"),
            n("committed"),
            "nothing lost or doubled: {r}"
        );
        assert!(r["rows_per_s"].as_f64().unwrap() > 0.0, "{r}");
        for f in ["mean", "p50", "p99", "max"] {
            let v = r["item_latency_ms"][f].as_f64().unwrap();
            assert!(v.is_finite() && v >= 0.0, "{f} in {r}");
        }
        assert!(r["batch_size"]["max"].as_u64().unwrap() >= 1, "{r}");
        assert!(r["batch_size"]["mean"].as_f64().unwrap() >= 1.0, "{r}");
    }
}

#[test]
fn batch_smoke_on_sqlite() {
    let doc = run("sqlite");
    assert_eq!(doc["scenario"]["items"], 200);
    assert_eq!(doc["scenario"]["db"], "sqlite");
    check(
        &doc,
        "sqlite",
        &[
            "per_row_autocommit",
            "tx_batch_50",
            "multi_row_50",
            "batcher",
            "batcher_fixed_10",
            "batcher_fixed_50",
            "batcher_light",
        ],
    );
}

#[test]
fn batch_smoke_on_postgres_when_reachable() {
    let doc = run("both");
    let has_pg = doc["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["db"] == "postgres");
    if !has_pg {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "CI=true and PostgreSQL is not reachable at 127.0.0.1:5432"
        );
        eprintln!("SKIPPED: PostgreSQL is not reachable at 127.0.0.1:5432");
        return;
    }
    check(
        &doc,
        "postgres",
        &[
            "per_row_autocommit",
            "tx_batch_50",
            "tx_batch_pipelined_50",
            "multi_row_50",
            "copy",
            "batcher",
            "batcher_fixed_10",
            "batcher_fixed_50",
            "batcher_light",
        ],
    );
}
