//! `Queue`: one Redis stream, its consumer group, its retry set and its dead-letter stream.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Value};

use crate::error::{PushError, PushManyError, RedisError};
use crate::fleet::FleetStats;
use crate::scripts::scripts;

/// How long one Redis call may take before it fails (`RedisError`), by default.
const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Pushes per pipeline or script call: large enough to amortise round trips, small enough
/// that one call never holds Redis (single-threaded) for long.
pub(crate) const PUSH_CHUNK: usize = 1000;

/// One Redis stream with one consumer group: the durable overflow of a pool.
///
/// Keys, for a queue named `emails`: the stream `emails`, the group `emails:workers`, the
/// retry set `emails:retry` and the dead-letter stream `emails:dead`. With Redis Cluster,
/// name the queue with a hash tag (`{emails}`) so all four share a slot: the Lua scripts
/// touch several of them at once.
///
/// Clones share one connection (a `redis` connection manager, which reconnects with backoff)
/// and one `pushed` counter.
///
/// # Examples
///
/// ```no_run
/// use surgepool_redis::Queue;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let queue = Queue::connect("redis://127.0.0.1:6379", "emails").await?;
/// let id = queue.push(&b"to: ada@example.com"[..]).await?;
/// let ids = queue.push_many(vec![&b"a"[..], &b"b"[..]]).await?;
/// assert_eq!(ids.len(), 2);
/// # let _ = id;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Queue {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) group: String,
    pub(crate) retry_key: String,
    pub(crate) dead_key: String,
    pub(crate) client: Client,
    pub(crate) conn: ConnectionManager,
    pub(crate) max_len: Option<u64>,
    pub(crate) op_timeout: Duration,
    pub(crate) pushed: AtomicU64,
}

/// Configures a [`Queue`] before connecting.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use surgepool_redis::Queue;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let queue = Queue::builder("redis://127.0.0.1:6379", "emails")
///     .max_len(100_000)                      // past this, pushes say Full
///     .op_timeout(Duration::from_millis(500)) // no call waits longer on a dead Redis
///     .connect()
///     .await?;
/// # let _ = queue;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct QueueBuilder {
    url: String,
    name: String,
    max_len: Option<u64>,
    op_timeout: Duration,
}

impl QueueBuilder {
    /// Bounds the stream: a push that would take it past `n` unsettled jobs (unread plus
    /// pending) says `Full`. Acked jobs are deleted, so the bound is the backlog. Default:
    /// unbounded.
    ///
    /// See the [example on `QueueBuilder`](QueueBuilder#examples).
    pub fn max_len(mut self, n: u64) -> Self {
        self.max_len = Some(n);
        self
    }

    /// How long one Redis call may take before it fails, so nothing blocks forever while
    /// Redis is down or restarting. Default 2 s; kept within 1 ms and 1 hour (so deadlines
    /// derived from it never overflow).
    ///
    /// See the [example on `QueueBuilder`](QueueBuilder#examples).
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout.clamp(Duration::from_millis(1), Duration::from_secs(3600));
        self
    }

    /// Connects, and creates the stream and its consumer group if missing.
    ///
    /// # Errors
    ///
    /// A [`RedisError`] when the URL is invalid or Redis cannot be reached in time.
    ///
    /// See the [example on `QueueBuilder`](QueueBuilder#examples).
    pub async fn connect(self) -> Result<Queue, RedisError> {
        let client = Client::open(self.url.as_str()).map_err(|e| RedisError::new("url", e))?;
        let conn = connect_manager(&client, self.op_timeout).await?;
        let name = self.name;
        let queue = Queue {
            inner: Arc::new(Inner {
                group: format!("{name}:workers"),
                retry_key: format!("{name}:retry"),
                dead_key: format!("{name}:dead"),
                name,
                client,
                conn,
                max_len: self.max_len,
                op_timeout: self.op_timeout,
                pushed: AtomicU64::new(0),
            }),
        };
        queue.ensure_group().await?;
        Ok(queue)
    }
}

/// A connection manager whose calls and reconnects are bounded by `op_timeout`.
pub(crate) async fn connect_manager(
    client: &Client,
    op_timeout: Duration,
) -> Result<ConnectionManager, RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(op_timeout))
        .set_response_timeout(Some(op_timeout))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_millis(500));
    let fut = ConnectionManager::new_with_config(client.clone(), config);
    match tokio::time::timeout(op_timeout.saturating_mul(4), fut).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(RedisError::new("connect", e)),
        Err(_) => Err(RedisError::timeout("connect")),
    }
}

impl Queue {
    /// Connects to `url` and opens the queue `name` with default settings.
    ///
    /// # Errors
    ///
    /// A [`RedisError`] when the URL is invalid or Redis cannot be reached in time.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let queue = surgepool_redis::Queue::connect("redis://127.0.0.1:6379", "emails").await?;
    /// assert_eq!(queue.name(), "emails");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(url: &str, name: &str) -> Result<Queue, RedisError> {
        Queue::builder(url, name).connect().await
    }

    /// Configures a queue before connecting; see [`QueueBuilder`].
    ///
    /// See the [example on `QueueBuilder`](QueueBuilder#examples).
    pub fn builder(url: &str, name: &str) -> QueueBuilder {
        QueueBuilder {
            url: url.to_owned(),
            name: name.to_owned(),
            max_len: None,
            op_timeout: DEFAULT_OP_TIMEOUT,
        }
    }

    /// The stream's key.
    ///
    /// See the [example on `Queue`](Queue#examples).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The consumer group's name (`<name>:workers`).
    ///
    /// See the [example on `Queue`](Queue#examples).
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// The dead-letter stream's key (`<name>:dead`).
    ///
    /// See the [example on `Queue`](Queue#examples).
    pub fn dead_letter_key(&self) -> &str {
        &self.inner.dead_key
    }

    /// Jobs this process pushed through this queue (all clones), `Overflow` included.
    ///
    /// See the [example on `Queue`](Queue#examples).
    pub fn pushed(&self) -> u64 {
        self.inner.pushed.load(Ordering::Relaxed)
    }

    /// Adds one job (XADD); returns its id once Redis has it. With `appendfsync always` it is
    /// on disk by then; see the README for the other settings.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] past the bound, [`PushError::Unavailable`] when Redis failed or
    /// did not answer within the operation timeout. The payload comes back.
    ///
    /// See the [example on `Queue`](Queue#examples).
    pub async fn push(&self, payload: impl Into<Bytes>) -> Result<String, PushError> {
        let payload = payload.into();
        let mut conn = self.inner.conn.clone();
        let res: Result<Value, RedisError> = match self.inner.max_len {
            Some(max) => {
                let mut inv = scripts().push_bounded.key(&self.inner.name);
                inv.arg(max).arg(&payload[..]);
                self.bounded("push", inv.invoke_async(&mut conn)).await
            }
            None => {
                let mut cmd = redis::cmd("XADD");
                cmd.arg(&self.inner.name)
                    .arg("*")
                    .arg("p")
                    .arg(&payload[..]);
                self.bounded("push", cmd.query_async(&mut conn)).await
            }
        };
        match res {
            Ok(Value::Int(-1)) => Err(PushError::Full(payload)),
            Ok(v) => match first_id(v) {
                Some(id) => {
                    self.inner.pushed.fetch_add(1, Ordering::Relaxed);
                    Ok(id)
                }
                None => Err(PushError::Unavailable(
                    payload,
                    RedisError::new("push", "unexpected reply"),
                )),
            },
            Err(e) => Err(PushError::Unavailable(payload, e)),
        }
    }

    /// Adds many jobs, pipelined in chunks of 1000 (one script call per chunk when the queue
    /// is bounded), and returns their ids in order.
    ///
    /// # Errors
    ///
    /// The payloads not pushed come back: with [`PushManyError::Full`] when a chunk would
    /// pass the bound (earlier chunks stay pushed), with [`PushManyError::Unavailable`] when
    /// Redis failed mid-way (the failed chunk may or may not have been added).
    ///
    /// See the [example on `Queue`](Queue#examples).
    pub async fn push_many<I, P>(&self, payloads: I) -> Result<Vec<String>, PushManyError>
    where
        I: IntoIterator<Item = P>,
        P: Into<Bytes>,
    {
        let payloads: Vec<Bytes> = payloads.into_iter().map(Into::into).collect();
        let mut ids = Vec::with_capacity(payloads.len());
        let mut rest = payloads.as_slice();
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(PUSH_CHUNK));
            match self.push_chunk(chunk).await {
                Ok(mut chunk_ids) => {
                    self.inner
                        .pushed
                        .fetch_add(chunk_ids.len() as u64, Ordering::Relaxed);
                    ids.append(&mut chunk_ids);
                }
                Err(None) => return Err(PushManyError::Full(rest.to_vec())),
                Err(Some(e)) => return Err(PushManyError::Unavailable(rest.to_vec(), e)),
            }
            rest = tail;
        }
        Ok(ids)
    }

    /// One chunk: `Err(None)` = past the bound.
    async fn push_chunk(&self, chunk: &[Bytes]) -> Result<Vec<String>, Option<RedisError>> {
        let mut conn = self.inner.conn.clone();
        let value: Value = match self.inner.max_len {
            Some(max) => {
                let mut inv = scripts().push_bounded.key(&self.inner.name);
                inv.arg(max);
                for p in chunk {
                    inv.arg(&p[..]);
                }
                self.bounded("push_many", inv.invoke_async(&mut conn))
                    .await
                    .map_err(Some)?
            }
            None => {
                let mut pipe = redis::pipe();
                for p in chunk {
                    pipe.cmd("XADD")
                        .arg(&self.inner.name)
                        .arg("*")
                        .arg("p")
                        .arg(&p[..]);
                }
                self.bounded("push_many", pipe.query_async(&mut conn))
                    .await
                    .map_err(Some)?
            }
        };
        match value {
            Value::Int(-1) => Err(None),
            Value::Array(items) => {
                let ids: Vec<String> = items.into_iter().filter_map(first_id).collect();
                if ids.len() == chunk.len() {
                    Ok(ids)
                } else {
                    Err(Some(RedisError::new("push_many", "unexpected reply")))
                }
            }
            _ => Err(Some(RedisError::new("push_many", "unexpected reply"))),
        }
    }

    /// Adds one job whose payload is `value` as JSON.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push); a value that cannot be encoded is `Unavailable` with the
    /// encoding error (nothing was sent).
    ///
    /// See the [example on `Queue`](Queue#examples).
    #[cfg(feature = "serde")]
    pub async fn push_json<T: serde::Serialize>(&self, value: &T) -> Result<String, PushError> {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.push(bytes).await,
            Err(e) => Err(PushError::Unavailable(
                Bytes::new(),
                RedisError::new("encode", e),
            )),
        }
    }

    /// The fleet-wide view, from XLEN, ZCARD and XPENDING: what every consumer on every
    /// machine holds, and what waits.
    ///
    /// # Errors
    ///
    /// A [`RedisError`] when Redis failed or did not answer in time.
    ///
    /// See the [example on `Queue`](Queue#examples).
    pub async fn fleet(&self) -> Result<FleetStats, RedisError> {
        let mut conn = self.inner.conn.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("XLEN").arg(&self.inner.name);
        pipe.cmd("ZCARD").arg(&self.inner.retry_key);
        pipe.cmd("XLEN").arg(&self.inner.dead_key);
        pipe.cmd("XPENDING")
            .arg(&self.inner.name)
            .arg(&self.inner.group);
        let (in_stream, retry_waiting, dead, pending): (u64, u64, u64, Value) =
            self.bounded("fleet", pipe.query_async(&mut conn)).await?;
        let mut stats = FleetStats {
            in_stream,
            retry_waiting,
            dead,
            pending: 0,
            consumers: Vec::new(),
        };
        if let Value::Array(parts) = pending {
            if let Some(Value::Int(n)) = parts.first() {
                stats.pending = u64::try_from(*n).unwrap_or(0);
            }
            if let Some(Value::Array(rows)) = parts.get(3) {
                for row in rows {
                    let pair: Option<(String, String)> = redis::from_redis_value(row.clone()).ok();
                    if let Some((name, count)) = pair {
                        stats.consumers.push((name, count.parse().unwrap_or(0)));
                    }
                }
            }
        }
        Ok(stats)
    }

    /// Up to `count` jobs from the dead-letter stream, oldest first, with the last error.
    ///
    /// # Errors
    ///
    /// A [`RedisError`] when Redis failed or did not answer in time.
    ///
    /// See the [example on `Queue`](Queue#examples).
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<(Job, String)>, RedisError> {
        let mut conn = self.inner.conn.clone();
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(&self.inner.dead_key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(count.max(1));
        let rows: Vec<(String, Fields)> = self
            .bounded("dead_letters", cmd.query_async(&mut conn))
            .await?;
        Ok(rows
            .into_iter()
            .map(|(_, fields)| {
                let mut job = Job::new(String::new(), Bytes::new());
                let mut error = String::new();
                for (k, v) in fields {
                    match k.as_str() {
                        "j" => job.id = String::from_utf8_lossy(&v).into_owned(),
                        "p" => job.payload = Bytes::from(v),
                        "d" => job.deliveries = String::from_utf8_lossy(&v).parse().unwrap_or(0),
                        "e" => error = String::from_utf8_lossy(&v).into_owned(),
                        _ => {}
                    }
                }
                (job, error)
            })
            .collect())
    }

    /// Recreates the group after a Redis that lost it (restarted without persistence).
    pub(crate) async fn recreate_group(&self) -> Result<(), RedisError> {
        self.ensure_group().await
    }

    async fn ensure_group(&self) -> Result<(), RedisError> {
        let mut conn = self.inner.conn.clone();
        let mut cmd = redis::cmd("XGROUP");
        // From "0", not "$": jobs pushed before the first consumer ever ran are consumed too.
        cmd.arg("CREATE")
            .arg(&self.inner.name)
            .arg(&self.inner.group)
            .arg("0")
            .arg("MKSTREAM");
        let res: Result<Result<Value, redis::RedisError>, _> =
            tokio::time::timeout(self.inner.op_timeout, cmd.query_async(&mut conn)).await;
        match res {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.code() == Some("BUSYGROUP") => Ok(()),
            Ok(Err(e)) => Err(RedisError::new("create group", e)),
            Err(_) => Err(RedisError::timeout("create group")),
        }
    }

    /// Runs one Redis call with the operation timeout.
    pub(crate) async fn bounded<T>(
        &self,
        what: &'static str,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        match tokio::time::timeout(self.inner.op_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisError::new(what, e)),
            Err(_) => Err(RedisError::timeout(what)),
        }
    }
}

use crate::job::Job;

/// A stream entry's fields, as XRANGE returns them.
type Fields = Vec<(String, Vec<u8>)>;

/// An entry id from an XADD reply (a bulk string), or the first of a script's id list.
fn first_id(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        Value::Array(mut items) if items.len() == 1 => first_id(items.pop()?),
        _ => None,
    }
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.inner.name)
            .field("max_len", &self.inner.max_len)
            .field("pushed", &self.pushed())
            .finish_non_exhaustive()
    }
}
