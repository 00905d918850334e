//! The admin listener: loopback only, a CPU profile that is a valid gzip-compressed pprof
//! protobuf, one profile at a time, and a clear 501 for the heap profile.

mod support;

use std::io::Read;
use std::net::{IpAddr, SocketAddr, SocketAddrV6, TcpStream, UdpSocket};
use std::time::Duration;

use prost::Message;
use support::*;

/// Every non-loopback address of this machine, as a socket address on `port`: the IPv4
/// addresses the kernel routes as local (`/proc/net/fib_trie`), the IPv6 addresses of its
/// interfaces (`/proc/net/if_inet6`, link-local ones with their interface's scope), and the
/// source address it would use to reach a public address (no packet is sent).
fn own_non_loopback_addrs(port: u16) -> Vec<SocketAddr> {
    let mut ips = Vec::new();
    let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let lines: Vec<&str> = trie.lines().collect();
    for pair in lines.windows(2) {
        if pair[1].contains("/32 host LOCAL") {
            if let Ok(ip) = pair[0].trim_start_matches([' ', '|', '-', '+']).parse() {
                ips.push((IpAddr::V4(ip), 0));
            }
        }
    }
    let inet6 = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    for line in inet6.lines() {
        let mut cols = line.split_whitespace();
        let (Some(hex), Some(index)) = (cols.next(), cols.next()) else {
            continue;
        };
        if let (Ok(bits), Ok(scope)) = (
            u128::from_str_radix(hex, 16),
            u32::from_str_radix(index, 16),
        ) {
            let ip = std::net::Ipv6Addr::from(bits);
            // Link-local addresses are reachable only through their interface.
            let scope = if ip.segments()[0] & 0xffc0 == 0xfe80 {
                scope
            } else {
                0
            };
            ips.push((IpAddr::V6(ip), scope));
        }
    }
    if let Some(ip) = UdpSocket::bind("0.0.0.0:0").ok().and_then(|s| {
        s.connect("192.0.2.1:9").ok()?;
        Some(s.local_addr().ok()?.ip())
    }) {
        ips.push((ip, 0));
    }
    ips.retain(|(ip, _)| !ip.is_loopback() && !ip.is_unspecified());
    ips.sort();
    ips.dedup();
    ips.into_iter()
        .map(|(ip, scope)| match ip {
            IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope)),
            IpAddr::V4(_) => SocketAddr::new(ip, port),
        })
        .collect()
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
    let others = own_non_loopback_addrs(admin.port());
    if others.is_empty() {
        eprintln!("note: this machine has no non-loopback address to try");
    }
    for there in others {
        eprintln!("the admin port must be closed on {there}");
        assert!(
            TcpStream::connect_timeout(&there, Duration::from_secs(1)).is_err(),
            "admin reachable on {there}"
        );
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
