//! Per-client rate limit (GCRA, governor), keyed by IP: 429 with `Retry-After` past the quota.
//!
//! The key is the TCP peer, except when the peer is a trusted proxy: then it is the
//! **right-most** `X-Forwarded-For` hop, the address our own proxy saw. The left-most hops are
//! whatever the client wrote, so keying on them would let anyone pick their own bucket.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use std::future::{ready, Ready};
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{header, HeaderMap, HeaderValue, Request, StatusCode};

/// How often keys idle long enough to be full again are dropped.
const CLEANUP_EVERY: Duration = Duration::from_secs(30);

/// The limiter and who may speak for clients.
#[derive(Debug)]
pub(crate) struct RateLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    trusted_proxies: Vec<IpAddr>,
}

impl RateLimit {
    pub(crate) fn new(
        per_second: std::num::NonZeroU32,
        burst: std::num::NonZeroU32,
        trusted_proxies: Vec<IpAddr>,
    ) -> Arc<RateLimit> {
        let quota = Quota::per_second(per_second).allow_burst(burst);
        let limit = Arc::new(RateLimit {
            limiter: RateLimiter::keyed(quota),
            trusted_proxies,
        });
        // Without this a stream of new source addresses grows the map without bound.
        let weak = Arc::downgrade(&limit);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CLEANUP_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(limit) = weak.upgrade() else { return };
                limit.limiter.retain_recent();
                limit.limiter.shrink_to_fit();
            }
        });
        limit
    }

    /// The key for a request from `peer` with `headers`.
    pub(crate) fn key(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusted_proxies.contains(&peer) {
            return peer;
        }
        headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|hop| hop.trim().parse().ok())
            .unwrap_or(peer)
    }
}

/// The rate-limit layer (a hand-written tower layer, like [`RecordLayer`]: no clone of the
/// stack below and no boxed future per request).
///
/// [`RecordLayer`]: crate::metrics::RecordLayer
#[derive(Debug, Clone)]
pub(crate) struct RateLimitLayer(pub(crate) Arc<RateLimit>);

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Limited<S> {
        Limited {
            inner,
            limit: self.0.clone(),
        }
    }
}

/// The service of [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Limited<S> {
    inner: S,
    limit: Arc<RateLimit>,
}

impl<S, B> tower::Service<Request<B>> for Limited<S>
where
    S: tower::Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let key = self.limit.key(peer, req.headers());
        match self.limit.limiter.check_key(&key) {
            Ok(()) => Either::Left(self.inner.call(req)),
            Err(not_until) => Either::Right(ready(Ok(too_many(
                not_until.wait_time_from(DefaultClock::default().now()),
            )))),
        }
    }
}

/// 429 with `Retry-After` in whole seconds, at least 1.
fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(serde_json::json!({"error": "rate limit exceeded"})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn right_most_hop_only_behind_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let nz = std::num::NonZeroU32::new(1).unwrap();
        let rl = RateLimit::new(nz, nz, vec![proxy]);
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 1.2.3.4".parse().unwrap());
        assert_eq!(
            rl.key(proxy, &headers),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        let stranger: IpAddr = "9.9.9.9".parse().unwrap();
        assert_eq!(rl.key(stranger, &headers), stranger);
        headers.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(rl.key(proxy, &headers), proxy);
    }
}
