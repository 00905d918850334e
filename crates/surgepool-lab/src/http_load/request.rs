//! What a request is ([`RequestTemplate`]) and one exchange of it on a keep-alive connection.

use std::time::Duration;

use std::net::SocketAddr;

use hyper::body::Bytes;

use super::raw::Conn;
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

impl RequestTemplate {
    /// The whole request to `target` as it goes on the wire: request line, `host`, the
    /// content type and length when there is a body (a length of 0 for an empty `POST`,
    /// `PUT` or `PATCH`), and the body.
    pub(crate) fn encode(&self, target: &Target) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(64 + target.path.len() + self.body.len());
        bytes.extend_from_slice(self.method.as_str().as_bytes());
        bytes.push(b' ');
        bytes.extend_from_slice(target.path.as_bytes());
        bytes.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        bytes.extend_from_slice(target.host.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        if let Some(content_type) = &self.content_type {
            bytes.extend_from_slice(b"content-type: ");
            bytes.extend_from_slice(content_type.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        let sends_length = matches!(
            self.method,
            http::Method::POST | http::Method::PUT | http::Method::PATCH
        );
        if !self.body.is_empty() || sends_length {
            bytes.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// Whether the response to this request has no body whatever its head says.
    pub(crate) fn is_head(&self) -> bool {
        self.method == http::Method::HEAD
    }
}

/// One request and its whole response body on `conn`, (re)connecting when needed.
pub(super) async fn exchange(
    conn: &mut Option<Conn>,
    target: &Target,
    template: &RequestTemplate,
) -> anyhow::Result<u16> {
    Ok(exchange_answer(conn, target, template).await?.status)
}

/// [`exchange`], keeping the `Retry-After` header too.
pub(crate) async fn exchange_answer(
    conn: &mut Option<Conn>,
    target: &Target,
    template: &RequestTemplate,
) -> anyhow::Result<Answer> {
    let request = template.encode(target);
    exchange_encoded(conn, target.addr, &request, template.is_head()).await
}

/// One request already encoded ([`RequestTemplate::encode`]) and its whole response on
/// `conn`, (re)connecting to `addr` when there is no connection or the server closed it.
/// The connection is dropped after an error, or when the response said it would close.
pub(super) async fn exchange_encoded(
    conn: &mut Option<Conn>,
    addr: SocketAddr,
    request: &[u8],
    head: bool,
) -> anyhow::Result<Answer> {
    if !conn.as_mut().is_some_and(Conn::reusable) {
        *conn = Some(Conn::connect(addr).await?);
    }
    let Some(open) = conn.as_mut() else {
        unreachable!("connected above")
    };
    match open.exchange(request, head).await {
        Ok((answer, reusable)) => {
            if !reusable {
                *conn = None;
            }
            Ok(answer)
        }
        Err(e) => {
            *conn = None;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_encodes_as_http_1_1() {
        let target = Target::parse_loopback("http://127.0.0.1:8080/work?x=1").unwrap();
        assert_eq!(
            RequestTemplate::default().encode(&target),
            b"GET /work?x=1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n\r\n"
        );
        let post = RequestTemplate {
            method: http::Method::POST,
            body: Bytes::from_static(b"{}"),
            content_type: Some(http::HeaderValue::from_static("application/json")),
        };
        assert_eq!(
            post.encode(&target),
            &b"POST /work?x=1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\ncontent-type: application/json\r\n\
               content-length: 2\r\n\r\n{}"[..]
        );
        let empty_post = RequestTemplate {
            method: http::Method::POST,
            ..RequestTemplate::default()
        };
        assert!(empty_post
            .encode(&target)
            .ends_with(b"content-length: 0\r\n\r\n"));
    }
}
