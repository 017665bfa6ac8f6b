//! A minimal blocking HTTP/1.1 client for the gateway on loopback: one request per connection
//! (`Connection: close`), JSON bodies, `Content-Length` or chunked responses. Only `http://`
//! URLs: the workload reaches the gateway on the host's loopback address, never across a network.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// A response: status code and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `host:port` and the path prefix of an `http://` base URL.
fn split(base: &str) -> Result<(String, String)> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("gateway URL {base:?} must start with http://"))?;
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() {
        bail!("gateway URL {base:?} names no host");
    }
    Ok((authority.to_owned(), prefix.to_owned()))
}

/// Send one request and read the whole response.
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<Response> {
    let (authority, prefix) = split(base)?;
    let mut stream = TcpStream::connect(&authority)
        .with_context(|| format!("connecting to the gateway at {authority}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!("{method} {prefix}{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: application/json\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if method != "GET" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    read_response(BufReader::new(stream))
        .with_context(|| format!("reading the answer to {method} {path}"))
}

fn read_response(mut reader: impl BufRead) -> Result<Response> {
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("malformed status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            bail!("connection closed inside the headers");
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                length = Some(value.parse::<usize>().context("bad Content-Length")?);
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .context("bad chunk size")?;
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn urls_must_be_plain_http() {
        assert_eq!(
            split("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1:8080".into(), "".into())
        );
        assert_eq!(
            split("http://127.0.0.1:8080/api/").unwrap(),
            ("127.0.0.1:8080".into(), "/api".into())
        );
        assert!(split("https://x")
            .unwrap_err()
            .to_string()
            .contains("must start with http://"));
    }

    #[test]
    fn reads_length_and_chunked_bodies() {
        let fixed = "HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\n{}xx";
        assert_eq!(
            read_response(fixed.as_bytes()).unwrap(),
            Response {
                status: 201,
                body: "{}xx".into()
            }
        );
        let chunked =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(read_response(chunked.as_bytes()).unwrap().body, "abcde");
        assert!(read_response("garbage\r\n".as_bytes()).is_err());
    }

    #[test]
    fn talks_to_a_real_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // The client may write its head and its body in separate segments: read until the
            // whole body its Content-Length announces has arrived.
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            let request = loop {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the client closed before its request was complete");
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if seen.len() >= end + 4 + length {
                        break text;
                    }
                }
            };
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
                .unwrap();
            request
        });
        let response = request(
            &format!("http://{addr}"),
            "POST",
            "/v1/data",
            Some("tok"),
            Some(&serde_json::json!({"a":1})),
        )
        .unwrap();
        assert_eq!(
            response,
            Response {
                status: 200,
                body: "{\"ok\":true}".into()
            }
        );
        let seen = server.join().unwrap();
        assert!(seen.starts_with("POST /v1/data HTTP/1.1\r\n"), "{seen}");
        assert!(seen.contains("Authorization: Bearer tok\r\n"));
        assert!(seen.ends_with("{\"a\":1}"));
    }
}
