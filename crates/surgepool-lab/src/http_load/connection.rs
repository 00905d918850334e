//! Opening the keep-alive connections, gently, and warming them before the clock starts.

use std::sync::Arc;

use anyhow::Context as _;

use super::raw::Conn;
use super::request::exchange;
use super::{RequestTemplate, Target};

/// Opens `n` connections, at most 32 handshakes at a time: gently, since a server's listen
/// backlog may be as short as 128 and an overflow costs a 1 s SYN retransmit.
pub(super) async fn preconnect(target: &Target, n: usize) -> anyhow::Result<Vec<Conn>> {
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let gate = gate.clone();
        let addr = target.addr;
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            Conn::connect(addr).await
        });
    }
    let mut conns = Vec::with_capacity(n);
    while let Some(result) = set.join_next().await {
        let conn = result
            .context("a connect task panicked")?
            .with_context(|| {
                format!(
                    "cannot open connection {} of {n} to {} (is it listening? is `ulimit -n` high enough?)",
                    conns.len() + 1,
                    target.url()
                )
            })?;
        conns.push(conn);
    }
    Ok(conns)
}

/// Sends one request on every connection, 32 at a time.
pub(super) async fn warm(conns: Vec<Conn>, target: &Target) -> anyhow::Result<Vec<Conn>> {
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut set = tokio::task::JoinSet::new();
    for conn in conns {
        let (gate, target) = (gate.clone(), target.clone());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let mut conn = Some(conn);
            exchange(&mut conn, &target, &RequestTemplate::default()).await?;
            conn.context("the warm-up lost its connection")
        });
    }
    let mut warmed = Vec::new();
    while let Some(result) = set.join_next().await {
        warmed.push(result.context("a warm-up task panicked")??);
    }
    Ok(warmed)
}
