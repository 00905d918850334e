//! The shared downstream over loopback TCP, so that consumer *processes* call one resource
//! as machines would call one database.
//!
//! The server runs in the lab's process around the run's [`Ctx`]: each call waits for one of
//! the downstream's slots, holds it for the service time and records the job's completion
//! (which job ran, how many times, latency from its intended arrival). The client is one
//! multiplexed connection per consumer process: a call is a tag plus the job's payload,
//! its answer the tag back, in any order.
//!
//! Frames: call = tag (u64 LE) + payload (16 bytes: see [`super::sim::encode`]); answer =
//! tag (u64 LE) + status (1 byte: 0 done, 1 refused as malformed).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::sim::Ctx;

const CALL: usize = 8 + PAYLOAD;
const PAYLOAD: usize = 16;
const ANSWER: usize = 9;

/// Starts the downstream on 127.0.0.1 (a free port). It accepts until the returned task is
/// aborted; open connections are served until their clients close them.
pub(super) async fn serve(ctx: Arc<Ctx>) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the downstream's listener")?;
    let addr = listener.local_addr()?;
    let accept = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(connection(ctx.clone(), stream));
        }
    });
    Ok((addr, accept))
}

async fn connection(ctx: Arc<Ctx>, stream: TcpStream) {
    let (read, write) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel::<[u8; ANSWER]>();
    tokio::spawn(write_frames(write, rx));
    let mut read = BufReader::new(read);
    let mut call = [0u8; CALL];
    while read.read_exact(&mut call).await.is_ok() {
        let ctx = ctx.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut answer = [0u8; ANSWER];
            answer[..8].copy_from_slice(&call[..8]);
            if ctx.handle(&call[8..], false).await.is_err() {
                answer[8] = 1;
            }
            let _ = tx.send(answer);
        });
    }
}

/// Writes every queued frame, then flushes once: a burst of answers is one write.
async fn write_frames<W, const N: usize>(mut write: W, mut rx: mpsc::UnboundedReceiver<[u8; N]>)
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(64 * N);
    while let Some(frame) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(&frame);
        while let Ok(frame) = rx.try_recv() {
            buf.extend_from_slice(&frame);
        }
        if write.write_all(&buf).await.is_err() {
            return;
        }
    }
}

/// A consumer process's connection to the downstream.
#[derive(Clone)]
pub(super) struct Client {
    calls: mpsc::UnboundedSender<[u8; CALL]>,
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<u8>>>>,
    next_tag: Arc<AtomicU64>,
}

impl Client {
    pub(super) async fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to the downstream at {addr}"))?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let (calls, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_frames(write, rx));
        let waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<u8>>>> = Arc::default();
        let w = waiting.clone();
        tokio::spawn(async move {
            let mut read = BufReader::new(read);
            let mut answer = [0u8; ANSWER];
            while read.read_exact(&mut answer).await.is_ok() {
                let mut tag = [0u8; 8];
                tag.copy_from_slice(&answer[..8]);
                let sender = lock(&w).remove(&u64::from_le_bytes(tag));
                if let Some(sender) = sender {
                    let _ = sender.send(answer[8]);
                }
            }
            // The downstream went away: every waiting call fails (its sender is dropped).
            lock(&w).clear();
        });
        Ok(Client {
            calls,
            waiting,
            next_tag: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Calls the downstream with a job's payload and waits for its answer.
    pub(super) async fn call(&self, payload: &[u8]) -> Result<(), String> {
        let payload: [u8; PAYLOAD] = payload
            .try_into()
            .map_err(|_| format!("malformed payload of {} bytes", payload.len()))?;
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(tag, tx);
        let mut call = [0u8; CALL];
        call[..8].copy_from_slice(&tag.to_le_bytes());
        call[8..].copy_from_slice(&payload);
        if self.calls.send(call).is_err() {
            lock(&self.waiting).remove(&tag);
            return Err("the downstream connection is closed".to_owned());
        }
        match rx.await {
            Ok(0) => Ok(()),
            Ok(_) => Err("the downstream refused the call".to_owned()),
            Err(_) => Err("the downstream connection closed during the call".to_owned()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::experiments::fleet::sim::encode;

    #[tokio::test]
    async fn calls_over_one_connection_complete_and_are_recorded_once_each() {
        let ctx = Ctx::new(100, 4, Duration::from_millis(1), Duration::from_secs(10));
        let (addr, _accept) = serve(ctx.clone()).await.unwrap();
        let client = Client::connect(addr).await.unwrap();
        let calls = (0..100u64).map(|seq| {
            let c = client.clone();
            async move { c.call(&encode(seq, 0)).await }
        });
        let results = futures_util::future::join_all(calls).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(ctx.distinct_and_duplicates(), (100, 0));
        assert!(
            client.call(b"short").await.is_err(),
            "a malformed payload is an error"
        );
        let malformed = client.call(&[0xff; 16]).await;
        assert!(
            malformed.is_ok(),
            "seq out of range is run, not recorded: {malformed:?}"
        );
        assert_eq!(ctx.distinct_and_duplicates(), (100, 0));
    }
}
