//! Smoke tests of `surgepool-lab http` and `serve` on loopback: a few seconds, low rates.
//! They check plumbing and accounting, never speed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const LAB: &str = env!("CARGO_BIN_EXE_surgepool-lab");

#[test]
fn http_smoke_run_writes_consistent_json() {
    let path =
        std::env::temp_dir().join(format!("surgepool-http-smoke-{}.json", std::process::id()));
    let report = std::env::temp_dir().join(format!(
        "surgepool-http-smoke-report-{}",
        std::process::id()
    ));
    let output = Command::new(LAB)
        .args(["http", "--preset", "smoke", "--layer", "fixed:4", "--sweep"])
        .args(["--sweep-limits", "2,16", "--report"])
        .arg(&report)
        .arg("--json")
        .arg(&path)
        .output()
        .expect("run surgepool-lab http");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "http failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("wrk2 -t2"),
        "prints the wrk command line:\n{stdout}"
    );

    let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(json["scenario"]["work"], "sleep");
    assert_eq!(json["scenario"]["service_ms"], 20);
    assert_eq!(json["scenario"]["alloc_kb"], 500);
    assert!(json["scenario"]["capacity_rps"].as_f64().unwrap() > 0.0);
    // Capacity is the median of several probes (3 in the smoke preset).
    let probes = json["scenario"]["capacity_probes_rps"].as_array().unwrap();
    assert_eq!(probes.len(), 3, "{probes:?}");
    let mut sorted: Vec<f64> = probes.iter().map(|p| p.as_f64().unwrap()).collect();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(json["scenario"]["capacity_rps"].as_f64(), Some(sorted[1]));
    assert_eq!(json["scenario"]["slo_ms"].as_f64(), Some(60.0));
    assert!(json["scenario"]["server_cpus"].is_null(), "not pinned");
    // Built without the allocator features, the lab runs on the system allocator, and says so.
    assert_eq!(json["machine"]["allocator"], "system");
    assert!(json["goals"].as_array().is_some_and(|g| !g.is_empty()));
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    let _ = std::fs::remove_dir_all(&report);
    assert!(
        html.contains("Sweep: SLO goodput"),
        "no sweep chart in the report"
    );
    assert!(html.contains("SLO 60 ms"), "no SLO line in the report");

    let strategies = json["strategies"].as_array().unwrap();
    let names: Vec<&str> = strategies
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bare", "layered", "fixed_2", "fixed_16"]);
    // Every arm runs the same schedule: a swept layer as long as the layered server (it
    // used to run half as long in the quick preset, weighing its start twice as much).
    assert_eq!(
        json["scenario"]["sweep_duration_s"], json["scenario"]["duration_s"],
        "{}",
        json["scenario"]
    );
    let offered = |s: &Value| s["offered"].as_u64().unwrap();
    for s in &strategies[2..] {
        assert_eq!(offered(s), offered(&strategies[1]), "{s}");
    }
    for s in strategies {
        // SLO goodput beside goodput: a subset of the completions.
        assert_eq!(s["slo_ms"].as_f64(), Some(60.0), "{s}");
        assert!(s["within_slo"].as_u64().unwrap() <= s["completed"].as_u64().unwrap());
        assert!(
            s["slo_goodput_rps"].as_f64().unwrap() <= s["goodput_rps"].as_f64().unwrap() + 1e-9
        );
        // How far the generator fell behind its schedule: a lag, never negative, its
        // percentiles in order.
        let lag = &s["send_lag_ms"];
        let (p50, p99) = (lag["p50"].as_f64().unwrap(), lag["p99"].as_f64().unwrap());
        assert!(0.0 <= p50 && p50 <= p99, "{s}");
        // Within the SLO of the actual send: at least as many as of the intended time.
        assert!(s["within_slo_from_send"].as_u64().unwrap() >= s["within_slo"].as_u64().unwrap());
        assert!(
            s["slo_goodput_from_send_rps"].as_f64().unwrap() >= 0.0,
            "{s}"
        );
        // Where the CPU went during the open loop.
        assert!(s["server"]["cpu"]["server_s"].as_f64().is_some(), "{s}");
        assert!(
            s["server"]["cpu"]["generator_s"].as_f64().unwrap() > 0.0,
            "{s}"
        );
        let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}"));
        assert!(n("offered") > 0, "{s}");
        assert_eq!(s["lost"].as_i64(), Some(0), "{s}");
        assert_eq!(n("offered"), n("accepted") + n("rejected"), "{s}");
        assert_eq!(
            n("accepted"),
            n("completed") + n("failed") + n("shed") + n("cancelled"),
            "{s}"
        );
        assert!(n("completed") > 0, "{s}");
        // status_counts covers every answered request.
        let counted: u64 = s["status_counts"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(
            counted + n("errors") + n("timeouts") + n("unsent"),
            n("offered"),
            "{s}"
        );
        assert_eq!(
            s["status_counts"]
                .get("503")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            n("rejected")
        );
        assert!(n("peak_rss_bytes") > 0, "{s}");
        assert!(s["latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{s}");
        assert!(s["achieved_rps"].as_f64().unwrap() > 0.0, "{s}");
    }
    // The bare server never sheds.
    assert_eq!(strategies[0]["rejected"], 0);
    // The layer's limit is sampled over the run (the report's limit chart).
    let series = strategies[1]["series"].as_array().unwrap();
    assert!(series.iter().all(|p| p["limit"] == 4), "{series:?}");
    for s in &strategies[2..] {
        assert!(s["config"].as_str().unwrap().contains("fixed"), "{s}");
    }
    let admission = &strategies[1]["server"]["admission"];
    assert!(admission["limit"].as_u64().is_some(), "{admission}");
    // Served responses feed the limiter as successes (not as ignored or dropped).
    assert!(admission["succeeded"].as_u64().unwrap() > 0, "{admission}");
    assert!(json["hello_rps"]["bare"].as_f64().unwrap() > 0.0);
    assert!(json["hello_rps"]["layered"].as_f64().unwrap() > 0.0);
}

#[test]
fn http_trace_limit_writes_each_adaptive_servers_decisions() {
    let dir = std::env::temp_dir().join(format!("surgepool-http-trace-{}", std::process::id()));
    let output = Command::new(LAB)
        .args([
            "http", "--preset", "smoke", "--layer", "adaptive", "--sweep",
        ])
        .args(["--sweep-limits", "4", "--trace-limit"])
        .arg(&dir)
        .output()
        .expect("run surgepool-lab http");
    assert!(
        output.status.success(),
        "http failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The open loop's server and the /hello runs' server, each to its own file; the fixed
    // layer and the bare server have no adaptive limit to trace.
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["adaptive-hello.log", "adaptive.log"]);
    for file in &files {
        let log = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(log.lines().count() >= 2, "{file}: {log}");
        assert!(
            log.lines()
                .all(|l| l.starts_with("t_s=") && l.contains(" limit=")),
            "{file}: {log}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn http_refuses_non_loopback_targets() {
    let output = Command::new(LAB)
        .args(["http", "--target", "http://192.0.2.1:80/", "--rps", "10"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
}

/// One HTTP/1.1 request on a fresh connection; returns the status line and the body.
fn get(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

#[test]
fn serve_answers_then_drains_and_exits_on_sigterm() {
    let mut child = Command::new(LAB)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--layer",
            "fixed:2",
            "--service-ms",
            "300",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();

    let (status, body) = get(&addr, "/hello");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "hello");
    let (status, _) = get(&addr, "/work");
    assert!(status.contains("200"), "{status}");
    let (_, stats) = get(&addr, "/stats");
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["admission"]["limit"], 2);
    assert_eq!(stats["admission"]["admitted"], 2);

    // A request in flight when the signal comes is drained: it still gets its answer.
    let in_flight = {
        let addr = addr.clone();
        std::thread::spawn(move || get(&addr, "/work"))
    };
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, stats) = get(&addr, "/stats");
        let stats: Value = serde_json::from_str(&stats).unwrap();
        if stats["in_flight"] == 1 {
            break;
        }
        assert!(Instant::now() < until, "the /work request never started");
        std::thread::yield_now();
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let until = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < until, "serve did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    let (status, body) = in_flight.join().unwrap();
    assert!(status.contains("200"), "drained request: {status}");
    assert_eq!(body, "done");
}

/// A one-route HTTP/1.1 server on a free port: answers every request 201 and sends what it
/// saw (method, content type, body) down the channel.
fn recording_server() -> (String, std::sync::mpsc::Receiver<(String, String, String)>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let method = line.split(' ').next().unwrap_or("").to_owned();
                    let (mut length, mut content_type) = (0usize, String::new());
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        let (name, value) = header.split_once(':').unwrap();
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => length = value.trim().parse().unwrap(),
                            "content-type" => content_type = value.trim().to_owned(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let _ = tx.send((method, content_type, String::from_utf8(body).unwrap()));
                    writer
                        .write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n")
                        .unwrap();
                }
            });
        }
    });
    (addr, rx)
}

#[test]
fn http_target_sends_the_method_body_and_content_type_asked_for() {
    let (addr, seen) = recording_server();
    let path =
        std::env::temp_dir().join(format!("surgepool-http-post-{}.json", std::process::id()));
    let output = Command::new(LAB)
        .args(["http", "--target", &format!("http://{addr}/api/orders")])
        .args(["--rps", "40", "--duration-s", "0.5", "--connections", "2"])
        .args(["--method", "POST", "--body", r#"{"item":"book"}"#])
        .arg("--json")
        .arg(&path)
        .output()
        .expect("run surgepool-lab http --target");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "http --target failed:\n{stderr}");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(json["strategies"][0]["status_counts"]["201"], 20, "{json}");
    assert_eq!(json["scenario"]["method"], "POST");
    let requests: Vec<_> = seen.try_iter().collect();
    assert_eq!(requests.len(), 20);
    for (method, content_type, body) in requests {
        assert_eq!(method, "POST");
        assert_eq!(content_type, "application/json");
        assert_eq!(body, r#"{"item":"book"}"#);
    }
}

#[test]
fn http_body_without_target_is_refused() {
    let output = Command::new(LAB)
        .args(["http", "--preset", "smoke", "--method", "POST"])
        .output()
        .expect("run surgepool-lab http");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--method and --body need --target"),
        "{stderr}"
    );
}

/// The first CPU this process may run on, from `/proc/self/status`.
#[cfg(target_os = "linux")]
fn first_allowed_cpu() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_owned();
    list.split([',', '-']).next().unwrap().to_owned()
}

#[cfg(target_os = "linux")]
#[test]
fn serve_runs_on_the_cpus_it_is_given() {
    let cpu = first_allowed_cpu();
    let mut child = Command::new(LAB)
        .args(["serve", "--addr", "127.0.0.1:0", "--layer", "none"])
        .args(["--cpus", &cpu])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start serve");
    // Once it prints its address, its runtime (pinned before it started) is up.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening on http://"), "{line}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    assert_eq!(allowed, cpu, "{status}");
}

#[test]
fn bad_cpu_lists_and_pinning_a_target_are_refused() {
    for list in ["", "x", "3-1", "99999"] {
        let output = Command::new(LAB)
            .args(["serve", "--addr", "127.0.0.1:0", "--cpus", list])
            .output()
            .expect("run serve");
        assert!(!output.status.success(), "--cpus {list:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("CPU"), "--cpus {list:?}: {stderr}");
    }
    let output = Command::new(LAB)
        .args([
            "http",
            "--pin",
            "--target",
            "http://127.0.0.1:9/",
            "--rps",
            "10",
        ])
        .output()
        .expect("run http");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--pin pins the lab's own servers"),
        "{stderr}"
    );
}
