//! Adaptive admission control for tower services: axum, hyper and tonic.
//!
//! A service that takes every request it is offered collapses under a spike: in-flight work,
//! memory and latency grow until it dies. [`AdmissionLayer`] puts a concurrency limit in
//! front of it, from [`surgepool::limit`] (adaptive by default), and answers requests beyond
//! it **at once** with an overload response (`503 Service Unavailable` with `Retry-After`, or
//! gRPC `UNAVAILABLE`), so admitted requests keep their latency and the server its memory.
//!
//! Which type: [`AdmissionLayer`] (or [`AdmissionLayer::builder`] for a queue, a deadline,
//! a name) is all most servers need, applied to an axum `Router` or around a hyper or tonic
//! service. It makes [`Admission`] services, counted in [`AdmissionStats`];
//! [`OverloadResponse`] changes what a shed request gets, [`Classify`] what counts as
//! overload. Give endpoints of very different latency their own layer. For work that is not
//! a request, use `surgepool`'s pools; the limit itself is [`surgepool::limit::Limiter`].
//!
//! The lab measures axum with and without the layer under open-loop load, on your machine
//! (no figures for it are recorded in the repository yet):
//! `cargo run --release -p surgepool-lab -- http`; for wrk, oha or curl,
//! `cargo run --release -p surgepool-lab -- serve --layer adaptive`. A runnable server:
//! `cargo run -p surgepool-tower --example axum_admission`.
//!
//! * **Shared limit.** The state lives behind one `Arc`: every service the layer makes and
//!   every clone of them (axum and hyper clone per request or per connection) counts against
//!   the same limit — unlike per-instance middleware such as `tower::limit` under axum
//!   (axum issues #2582, #2634).
//! * **Admission in `call`.** [`Admission::poll_ready`](tower_service::Service::poll_ready) is
//!   always ready, so a cooperative-yield `Pending` of the inner service is never taken for
//!   overload; the inner service's readiness is driven after admission, in the response
//!   future (see [`Admission`]).
//! * **Optional queue with a deadline.** Up to [`queue_capacity`] requests may wait for a
//!   permit; the [`deadline`] covers the queue wait *and* the inner call, up to the response
//!   head.
//! * **Feedback.** Each request's latency (permit held, body included) and outcome drive the
//!   adaptive limit: 5xx answers, inner errors, timeouts, panics and cancelled requests count
//!   as drops ([`Classify`] to change that).
//! * **Streaming bodies hold their permit** until they end ([`AdmissionBody`]), for at most
//!   [`body_timeout`] (10 s by default), so clients that never read cannot wedge the server.
//!
//! [`queue_capacity`]: AdmissionLayerBuilder::queue_capacity
//! [`deadline`]: AdmissionLayerBuilder::deadline
//! [`body_timeout`]: AdmissionLayerBuilder::body_timeout
//!
//! # axum
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use surgepool::Limit;
//! use surgepool_tower::AdmissionLayer;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let admission = AdmissionLayer::new(Limit::adaptive())?; // full: 503 + Retry-After at once
//!     let app = Router::new()
//!         .route("/", get(|| async { "hello" }))
//!         .layer(admission.clone()); // one limit for every route and every per-request clone
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! `admission.stats()` reads the counters (admitted, shed, timed out, the current limit).
//!
//! # hyper, with `service_fn`
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use http_body_util::Full;
//! use hyper::body::{Bytes, Incoming};
//! use hyper::{Request, Response};
//! use hyper_util::rt::{TokioIo, TokioTimer};
//! use hyper_util::service::TowerToHyperService;
//! use surgepool::Limit;
//! use surgepool_tower::AdmissionLayer;
//! use tower::{service_fn, Layer};
//!
//! async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     Ok(Response::new(Full::new(Bytes::from("hello"))))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let admission = AdmissionLayer::builder()
//!     .limit(Limit::adaptive())
//!     .queue_capacity(100)
//!     .deadline(Duration::from_secs(1))
//!     .build()?;
//! // One service for the whole server: every connection serves a clone of it.
//! let service = admission.layer(service_fn(hello));
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     let service = TowerToHyperService::new(service.clone());
//!     tokio::spawn(async move {
//!         let conn = hyper::server::conn::http1::Builder::new()
//!             // Without a timer hyper enforces no header-read timeout: slowloris clients
//!             // and idle keep-alive connections would be held forever. With one, a
//!             // connection waiting for its next request head closes after 10 s.
//!             .timer(TokioTimer::new())
//!             .header_read_timeout(Duration::from_secs(10))
//!             .serve_connection(TokioIo::new(stream), service);
//!         let _ = conn.await;
//!     });
//! }
//! # }
//! ```
//!
//! # tonic
//!
//! This crate does not depend on tonic (it would cost a long build for one constructor).
//! tonic servers are tower services over `http::Request`/`http::Response`, so the layer
//! applies as is; [`AdmissionLayerBuilder::grpc`] makes shed requests answer with a gRPC
//! "trailers-only" `UNAVAILABLE` (status 14), which tonic clients read as
//! `Status::unavailable`, and classifies `grpc-status` 4, 8 and 14 as drops:
//!
//! ```text
//! let admission = AdmissionLayer::builder().limit(Limit::adaptive()).grpc().build()?;
//! tonic::transport::Server::builder()
//!     .layer(admission)
//!     .add_service(GreeterServer::new(MyGreeter::default()))
//!     .serve(addr)
//!     .await?;
//! ```
//!
//! The response body type changes to [`AdmissionBody<B>`]; it implements `http_body::Body`
//! whenever `B` does and `B::Data: From<Bytes>` (true of axum's, hyper's and tonic's bodies).
//!
//! # Panics
//!
//! With a [`deadline`](AdmissionLayerBuilder::deadline), `call` must run inside a tokio
//! runtime with the time driver enabled (as any tokio timer).
#![forbid(unsafe_code)]

mod body;
mod classify;
mod error;
mod future;
mod layer;
#[cfg(feature = "metrics")]
mod metrics;
mod reaper;
mod response;
mod service;
mod shared;

pub use body::AdmissionBody;
pub use classify::{Classify, GrpcClassifier, HttpClassifier, Outcome};
pub use error::BuildError;
pub use future::ResponseFuture;
pub use layer::{AdmissionLayer, AdmissionLayerBuilder};
pub use response::{OverloadResponse, Reason};
pub use service::Admission;
pub use shared::AdmissionStats;
