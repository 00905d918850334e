//! What a request is ([`RequestTemplate`]) and one exchange of it on a keep-alive connection.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;

use super::connection::connect;
use super::Target;

/// What every request of a run is: its method, its body and the body's content type.
#[derive(Debug, Clone)]
pub(crate) struct RequestTemplate {
    pub(crate) method: http::Method,
    /// Sent as is (with a `content-length`); empty means no body.
    pub(crate) body: Bytes,
    pub(crate) content_type: Option<http::HeaderValue>,
}

impl Default for RequestTemplate {
    /// `GET` with no body.
    fn default() -> Self {
        RequestTemplate {
            method: http::Method::GET,
            body: Bytes::new(),
            content_type: None,
        }
    }
}

/// What came back: the status and, when the server sent one in seconds, its `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<Duration>,
}

/// One request and its whole response body on `conn`, (re)connecting when needed.
pub(super) async fn exchange(
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    target: &Target,
    template: &RequestTemplate,
) -> anyhow::Result<u16> {
    Ok(exchange_answer(conn, target, template).await?.status)
}

/// [`exchange`], keeping the `Retry-After` header too.
pub(crate) async fn exchange_answer(
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    target: &Target,
    template: &RequestTemplate,
) -> anyhow::Result<Answer> {
    let reusable = match conn.as_mut() {
        // A keep-alive connection the server closed shows up here, not as a failed request.
        Some(sender) => sender.ready().await.is_ok(),
        None => false,
    };
    if !reusable {
        *conn = Some(connect(target.addr).await?);
    }
    let sender = conn.as_mut().expect("connected above");
    sender.ready().await?;
    let mut request = http::Request::builder()
        .method(template.method.clone())
        .uri(target.path.as_str())
        .header(http::header::HOST, target.host.as_str());
    if let Some(content_type) = &template.content_type {
        request = request.header(http::header::CONTENT_TYPE, content_type);
    }
    let request = request.body(Full::new(template.body.clone()))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    response.into_body().collect().await?;
    Ok(Answer {
        status,
        retry_after,
    })
}
