//! Plain hyper (http1 + `TowerToHyperService`) on loopback: the layer's permit comes back
//! as a success once hyper has written the body, though hyper never polls a finished body
//! to its end.

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use surgepool::Limit;
use surgepool_tower::AdmissionLayer;
use tower::{service_fn, Layer};

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from("hello"))))
}

#[tokio::test]
async fn hyper_served_responses_count_as_successes() {
    let layer = AdmissionLayer::new(Limit::fixed(4)).unwrap();
    let service = layer.layer(service_fn(hello));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .await
    });

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let request = Request::get("/")
            .header("host", "localhost")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "hello");
    }
    drop(sender);
    // The server task ends when the client closes the connection; by then every body is
    // released.
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server connection ends")
        .unwrap()
        .unwrap();
    let stats = layer.stats().limiter;
    assert_eq!(stats.in_flight, 0);
    assert_eq!((stats.succeeded, stats.ignored, stats.dropped), (3, 0, 0));
}

/// A response body of `n` chunks of 1 MiB: far more than the socket buffers hold, so hyper
/// stops polling it as soon as a client stops reading.
struct Chunks(usize);

static CHUNK: [u8; 1 << 20] = [b'x'; 1 << 20];

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(None);
        }
        self.0 -= 1;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(&CHUNK)))))
    }

    fn is_end_stream(&self) -> bool {
        self.0 == 0
    }
}

async fn routes(req: Request<Incoming>) -> Result<Response<Chunks>, Infallible> {
    let chunks = if req.uri().path() == "/big" { 64 } else { 0 };
    Ok(Response::new(Chunks(chunks)))
}

async fn status_of(addr: std::net::SocketAddr) -> u16 {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::get("/")
        .header("host", "localhost")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    status
}

#[tokio::test(start_paused = true)]
async fn two_clients_that_never_read_a_streaming_body_do_not_wedge_the_server() {
    use tokio::io::AsyncWriteExt;

    let timeout = Duration::from_secs(10);
    let layer = AdmissionLayer::builder()
        .limit(Limit::fixed(2))
        .body_timeout(timeout)
        .build()
        .unwrap();
    let service = layer.layer(service_fn(routes));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A server with no timeouts of its own: only the layer can give the permits back.
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    let start = tokio::time::Instant::now();

    // Two clients ask for 64 MiB each and never read a byte of it.
    let mut idle_clients = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /big HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        idle_clients.push(stream);
    }
    let mut turns = 0;
    while layer.limiter().in_flight() < 2 {
        tokio::task::yield_now().await;
        turns += 1;
        assert!(turns < 100_000, "the two requests never arrived");
    }
    // While the bodies hold both permits, everyone else is shed. (Paused time only jumps
    // when every task waits; should the runtime have found itself idle already, the permits
    // may be back, and this check says nothing.)
    if start.elapsed() < timeout {
        assert_eq!(status_of(addr).await, 503);
    }

    // Past the body timeout the permits are back, and the server answers again, though the
    // two clients are still connected and still not reading.
    tokio::time::sleep(timeout).await;
    assert_eq!(status_of(addr).await, 200);
    let stats = layer.stats();
    assert_eq!(stats.body_timeouts, 2);
    assert_eq!(stats.limiter.in_flight, 0);
    drop(idle_clients);
}
