//! Where requests go: [`Target`], a loopback address and a path.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, ensure, Context as _};

/// Where requests go: a loopback address and a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) host: String,
    pub(crate) path: String,
}

impl Target {
    /// Parses `http://HOST:PORT/PATH`, where HOST must be `localhost` or a loopback IP.
    pub(crate) fn parse_loopback(url: &str) -> anyhow::Result<Target> {
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("{url:?}: only http:// is supported, not {other}://"),
            None => bail!("{url:?}: the URL needs http:// in front"),
        }
        let host = uri.host().context("the URL has no host")?;
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .with_context(|| format!("{host:?} is neither localhost nor an IP address"))?
        };
        ensure!(
            ip.is_loopback(),
            "refusing to load-test {host}: the lab only sends load to loopback addresses \
             (127.0.0.0/8, ::1, localhost), so it can never flood another machine"
        );
        let port = uri.port_u16().unwrap_or(80);
        let path = uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        Ok(Target {
            addr: SocketAddr::new(ip, port),
            host: format!("{host}:{port}"),
            path,
        })
    }

    /// The same server, another path.
    pub(crate) fn with_path(&self, path: &str) -> Target {
        Target {
            path: path.to_owned(),
            ..self.clone()
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}{}", self.host, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_parse() {
        let t = Target::parse_loopback("http://127.0.0.1:8080/work").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.path, "/work");
        let t = Target::parse_loopback("http://localhost:3000").unwrap();
        assert_eq!(t.addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(t.path, "/");
        let t = Target::parse_loopback("http://[::1]:9000/x?y=1").unwrap();
        assert_eq!(t.addr, "[::1]:9000".parse().unwrap());
        assert_eq!(t.path, "/x?y=1");
    }

    #[test]
    fn other_targets_are_refused() {
        for url in [
            "http://10.0.0.1:80/",
            "http://example.com/",
            "https://127.0.0.1/",
            "127.0.0.1:80",
            "http://0.0.0.0:8080/",
        ] {
            assert!(
                Target::parse_loopback(url).is_err(),
                "{url} should be refused"
            );
        }
        let err = Target::parse_loopback("http://192.168.1.2/").unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
    }
}
