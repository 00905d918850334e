//! The admin listener: loopback only, a CPU profile that is a valid gzip-compressed pprof
//! protobuf, one profile at a time, and a clear 501 for the heap profile.

mod support;

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use prost::Message;
use support::*;

/// A non-loopback address of this machine, if it has one (the source address the kernel
/// would use to reach a public address; no packet is sent).
fn own_non_loopback_ip() -> Option<IpAddr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn refuses_to_start_with_a_non_loopback_admin_address() {
    let dir = TempDir::new("admin-refuse");
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.1:6060"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_orders"))
            .args(["serve", "--addr", "127.0.0.1:0", "--admin-addr", addr])
            .current_dir(&dir.0)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{addr} must be refused");
        assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_is_loopback_only_and_profiles_are_gzip_pprof() {
    let dir = TempDir::new("admin");
    let p = service(&dir, &[]);
    let admin = p.admin.unwrap();
    assert!(admin.ip().is_loopback());
    match own_non_loopback_ip() {
        Some(ip) => {
            let there = SocketAddr::new(ip, admin.port());
            assert!(
                TcpStream::connect_timeout(&there, Duration::from_secs(1)).is_err(),
                "admin reachable on {there}"
            );
        }
        None => eprintln!("note: this machine has no non-loopback address to try"),
    }
    // The admin routes are not on the public port.
    let c = client();
    assert_eq!(c.get(p.url("/metrics")).send().await.unwrap().status(), 404);
    assert_eq!(
        c.get(p.url("/debug/pprof/profile?seconds=1"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Busy the service a little so the profile has samples, and profile it.
    let load = tokio::spawn({
        let c = c.clone();
        let url = p.url("/api/hello");
        async move {
            for _ in 0..2000 {
                let _ = c.get(&url).send().await;
            }
        }
    });
    let first = tokio::spawn({
        // Symbolising a debug build's stacks takes seconds on a busy machine.
        let c = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let url = p.admin_url("/debug/pprof/profile?seconds=1");
        async move { c.get(url).send().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = c
        .get(p.admin_url("/debug/pprof/profile?seconds=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 409, "one profile at a time");
    let r = first.await.unwrap();
    assert_eq!(r.status(), 200);
    let profile = gzip_pprof(&r.bytes().await.unwrap());
    assert!(!profile.sample_type.is_empty());
    assert!(!profile.string_table.is_empty());
    let _ = load.await;

    assert_eq!(
        c.get(p.admin_url("/debug/pprof/profile?seconds=0"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        c.get(p.admin_url("/debug/pprof/profile?seconds=18446744073709551615"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let heap = c
        .get(p.admin_url("/debug/pprof/heap"))
        .send()
        .await
        .unwrap();
    if cfg!(target_os = "linux") {
        // jemalloc's sampled heap, as a gzip-compressed pprof protobuf.
        assert_eq!(heap.status(), 200);
        let profile = gzip_pprof(&heap.bytes().await.unwrap());
        assert!(!profile.sample_type.is_empty());
    } else {
        assert_eq!(heap.status(), 501);
        assert!(heap.text().await.unwrap().contains("jemalloc"));
    }
}

/// Decodes a gzip-compressed pprof protobuf, as `/debug/pprof/*` serve it.
fn gzip_pprof(gz: &[u8]) -> pprof::protos::Profile {
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .unwrap();
    pprof::protos::Profile::decode(&raw[..]).expect("a pprof protobuf")
}
