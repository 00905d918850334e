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
