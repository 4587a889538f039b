//! The Hugging Face hub's file API over HTTPS, used as the hub's own client uses it.
//!
//! A `HEAD` on `{endpoint}/{repo}/resolve/main/{file}` announces the file: for a large (LFS)
//! file the hub answers with a redirect to its CDN that carries `X-Linked-Size` and
//! `X-Linked-Etag` (the sha256); a small file is answered directly, with `Content-Length`
//! and a git-blob `ETag`. A `GET` on the final location, with a `Range` header to resume,
//! then streams the bytes. Redirects are followed here rather than by the HTTP client,
//! because the announcement lives on the first response, not the last.

use std::io::{self, Read};
use std::time::Duration;

use ureq::http::HeaderMap;
use ureq::{Agent, BodyReader};

/// The public hub, used unless `--endpoint` or `HF_ENDPOINT` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The environment variable the hub's own client reads for another endpoint (a mirror).
pub const ENDPOINT_ENV: &str = "HF_ENDPOINT";
/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 10;
/// Size header of an LFS file, on the hub's redirect.
const LINKED_SIZE: &str = "x-linked-size";
/// sha256 header of an LFS file, on the hub's redirect.
const LINKED_ETAG: &str = "x-linked-etag";

/// Where the hub is and how long to wait for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubOptions {
    /// Base address, e.g. `https://huggingface.co` (a trailing `/` is ignored).
    pub endpoint: String,
    /// Longest wait to resolve the host and connect (TLS included).
    pub connect_timeout: Duration,
    /// Longest wait for any single read: a server that sends nothing for this long is
    /// given up on instead of hanging the download.
    pub read_timeout: Duration,
}

/// Why talking to the hub failed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The request could not be made or answered (DNS, connection refused, TLS, protocol).
    #[error("{url}: {source}")]
    Request {
        /// The address asked.
        url: String,
        /// The HTTP client's error.
        source: Box<ureq::Error>,
    },
    /// The server did not answer, or stopped sending, within the configured time.
    #[error("{url}: no answer within {} s ({what} timed out)", .after.as_secs_f64())]
    Timeout {
        /// The address asked.
        url: String,
        /// Which wait ran out (`connect`, `read`, …).
        what: String,
        /// The limit that ran out.
        after: Duration,
    },
    /// The connection broke while the body was streaming.
    #[error("{url}: connection lost: {source}")]
    Lost {
        /// The address asked.
        url: String,
        /// What the OS or the HTTP client reported.
        source: io::Error,
    },
    /// The hub does not have the file: 404, or 401/403, which it answers for a repo that
    /// does not exist or is private.
    #[error("{repo} has no file {file}: {url} answered {status}, expected 200 or a redirect")]
    NotFound {
        /// The repository.
        repo: String,
        /// The file inside it.
        file: String,
        /// The address asked.
        url: String,
        /// The status code (404, 401 for gated or private repos, …).
        status: u16,
    },
    /// The hub or CDN answered with an unexpected status.
    #[error("{repo}/{file}: {url} answered {status}, expected {expected}")]
    Status {
        /// The repository.
        repo: String,
        /// The file inside it.
        file: String,
        /// The address asked.
        url: String,
        /// What was expected (`200 or a redirect`, `200 or 206`).
        expected: &'static str,
        /// The status code received.
        status: u16,
    },
    /// A redirect without a usable `Location`, or more redirects than anyone needs.
    #[error("{url}: {problem}")]
    Redirect {
        /// The address that redirected.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// A header the download relies on is missing or malformed.
    #[error("{url}: header {header}: expected {expected}, found {found:?}")]
    Header {
        /// The address asked.
        url: String,
        /// The header's name.
        header: &'static str,
        /// What it should hold.
        expected: &'static str,
        /// What it holds (`missing` when absent).
        found: String,
    },
}

/// A file as the hub announces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// The repository, e.g. `openai-community/gpt2`.
    pub repo: String,
    /// The file inside it, e.g. `model.safetensors`.
    pub file: String,
    /// Where the bytes are: the CDN for LFS files, else the `/resolve/` address itself.
    pub location: String,
    /// Its length in bytes.
    pub size: u64,
    /// Its sha256 in lower-case hex, when the hub announces one (LFS files).
    pub sha256: Option<String>,
}

impl RemoteFile {
    /// `{repo}/{file}`, how errors name it.
    pub fn name(&self) -> String {
        format!("{}/{}", self.repo, self.file)
    }
}

/// A client for one hub endpoint.
#[derive(Clone, Debug)]
pub struct Hub {
    agent: Agent,
    endpoint: String,
    options: HubOptions,
}

impl Hub {
    /// A client with `options`' endpoint and timeouts.
    pub fn new(options: HubOptions) -> Self {
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("picogpt-embedded-host-tools/", env!("CARGO_PKG_VERSION")))
            .timeout_resolve(Some(options.connect_timeout))
            .timeout_connect(Some(options.connect_timeout))
            .timeout_per_read(Some(options.read_timeout))
            .timeout_per_write(Some(options.read_timeout))
            .build()
            .new_agent();
        let endpoint = options.endpoint.trim_end_matches('/').to_owned();
        Self { agent, endpoint, options }
    }

    /// `{endpoint}/{repo}` — the repository's page on the hub.
    pub fn repo_url(&self, repo: &str) -> String {
        format!("{}/{repo}", self.endpoint)
    }

    /// Asks the hub for `repo`'s `file` on the `main` branch: its size, its sha256 if it is
    /// an LFS file, and where to fetch it. Redirects on the hub itself (a renamed repo) are
    /// followed; the first answer that is the file or an LFS redirect is the announcement.
    pub fn remote_file(&self, repo: &str, file: &str) -> Result<RemoteFile, HubError> {
        let mut url = format!("{}/{repo}/resolve/main/{file}", self.endpoint);
        for _ in 0..MAX_REDIRECTS {
            let response = self.agent.head(&url).call().map_err(|e| self.error(&url, e))?;
            let (status, headers) = (response.status(), response.headers());
            let linked = headers.contains_key(LINKED_SIZE);
            let location = if status.is_redirection() {
                let next = location(&url, headers)?;
                if !linked {
                    url = next;
                    continue;
                }
                next
            } else if status.is_success() {
                url.clone()
            } else {
                return Err(status_error(repo, file, url, status.as_u16()));
            };
            let size = number(&url, headers, if linked { LINKED_SIZE } else { "content-length" })?;
            return Ok(RemoteFile {
                repo: repo.into(),
                file: file.into(),
                location,
                size,
                sha256: sha256(&url, headers)?,
            });
        }
        Err(HubError::Redirect { url, problem: format!("more than {MAX_REDIRECTS} redirects") })
    }

    /// Starts fetching `remote` from byte `from` on (with a `Range` header when `from > 0`).
    /// The server may ignore the range and send everything: [`Download::start`] says where
    /// the body begins.
    pub fn open(&self, remote: &RemoteFile, from: u64) -> Result<Download, HubError> {
        let mut url = remote.location.clone();
        for _ in 0..MAX_REDIRECTS {
            let mut request = self.agent.get(&url);
            if from > 0 {
                request = request.header("Range", format!("bytes={from}-"));
            }
            let response = request.call().map_err(|e| self.error(&url, e))?;
            let status = response.status().as_u16();
            if response.status().is_redirection() {
                url = location(&url, response.headers())?;
                continue;
            }
            let start = match status {
                200 => 0,
                206 => range_start(&url, response.headers(), from, remote.size)?,
                _ => {
                    return Err(HubError::Status {
                        repo: remote.repo.clone(),
                        file: remote.file.clone(),
                        url,
                        expected: if from > 0 { "206 or 200" } else { "200" },
                        status,
                    });
                }
            };
            let body = response.into_body();
            if let Some(length) = body.content_length()
                && length != remote.size - start
            {
                return Err(HubError::Header {
                    url,
                    header: "Content-Length",
                    expected: "the announced size less the bytes already there",
                    found: length.to_string(),
                });
            }
            let reader = body.into_reader();
            return Ok(Download { start, reader, url, options: self.options.clone() });
        }
        Err(HubError::Redirect { url, problem: format!("more than {MAX_REDIRECTS} redirects") })
    }

    /// A client error as a [`HubError`], timeouts told apart with the limit that ran out.
    fn error(&self, url: &str, error: ureq::Error) -> HubError {
        match error {
            ureq::Error::Timeout(what) => timeout(&self.options, url, what),
            ureq::Error::Io(source) if is_timeout(&source) => {
                timeout(&self.options, url, ureq::Timeout::PerRead)
            }
            source => HubError::Request { url: url.into(), source: Box::new(source) },
        }
    }
}

/// 401, 403 and 404 (what the hub answers for a missing file, or a repo that does not exist
/// or is private) as [`HubError::NotFound`], anything else as [`HubError::Status`].
fn status_error(repo: &str, file: &str, url: String, status: u16) -> HubError {
    let (repo, file) = (repo.into(), file.into());
    match status {
        401 | 403 | 404 => HubError::NotFound { repo, file, url, status },
        _ => HubError::Status { repo, file, url, expected: "200 or a redirect", status },
    }
}

/// A response body being streamed.
pub struct Download {
    /// The offset in the file of the body's first byte.
    pub start: u64,
    reader: BodyReader<'static>,
    url: String,
    options: HubOptions,
}

impl Download {
    /// Reads the next bytes of the body (0 at its end); a stall longer than the read timeout
    /// or a broken connection is an error naming the address.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, HubError> {
        self.reader.read(buf).map_err(|source| {
            let client = source.get_ref().and_then(|e| e.downcast_ref::<ureq::Error>());
            match client {
                Some(ureq::Error::Timeout(what)) => timeout(&self.options, &self.url, *what),
                _ if is_timeout(&source) => {
                    timeout(&self.options, &self.url, ureq::Timeout::PerRead)
                }
                _ => HubError::Lost { url: self.url.clone(), source },
            }
        })
    }

    /// The address the bytes come from.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A timeout as a [`HubError`] with the limit that ran out.
fn timeout(options: &HubOptions, url: &str, what: ureq::Timeout) -> HubError {
    let (name, after) = match what {
        ureq::Timeout::Resolve | ureq::Timeout::Connect => ("connect", options.connect_timeout),
        ureq::Timeout::PerWrite => ("write", options.read_timeout),
        _ => ("read", options.read_timeout),
    };
    HubError::Timeout { url: url.into(), what: name.into(), after }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
}

/// The redirect target, made absolute against `url`.
fn location(url: &str, headers: &HeaderMap) -> Result<String, HubError> {
    let target = headers.get("location").and_then(|v| v.to_str().ok()).ok_or_else(|| {
        HubError::Redirect { url: url.into(), problem: "redirect without a Location".into() }
    })?;
    Ok(resolve(url, target))
}

/// `target` (absolute, host-relative `/path` or path-relative) resolved against `base`.
fn resolve(base: &str, target: &str) -> String {
    if target.contains("://") {
        return target.into();
    }
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let origin_end = base[after_scheme..].find('/').map_or(base.len(), |i| after_scheme + i);
    if target.starts_with('/') {
        return format!("{}{target}", &base[..origin_end]);
    }
    let path = base.split(['?', '#']).next().unwrap_or(base);
    let dir_end = path.rfind('/').filter(|&i| i >= origin_end).map_or(path.len(), |i| i + 1);
    let separator = if dir_end == path.len() && !path.ends_with('/') { "/" } else { "" };
    format!("{}{separator}{target}", &path[..dir_end])
}

/// A header holding a byte count.
fn number(url: &str, headers: &HeaderMap, header: &'static str) -> Result<u64, HubError> {
    let value = headers.get(header).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    value.as_deref().and_then(|v| v.trim().parse().ok()).ok_or_else(|| HubError::Header {
        url: url.into(),
        header,
        expected: "a byte count",
        found: value.unwrap_or_else(|| "missing".into()),
    })
}

/// The announced sha256: `X-Linked-Etag`, quoted or weak (`W/"…"`), as 64 hex digits.
fn sha256(url: &str, headers: &HeaderMap) -> Result<Option<String>, HubError> {
    let Some(value) = headers.get(LINKED_ETAG) else { return Ok(None) };
    let raw = String::from_utf8_lossy(value.as_bytes());
    let hex = raw.trim().trim_start_matches("W/").trim_matches('"').to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(Some(hex))
    } else {
        Err(HubError::Header {
            url: url.into(),
            header: "X-Linked-Etag",
            expected: "a sha256 (64 hex digits)",
            found: raw.into_owned(),
        })
    }
}

/// Checks a 206's `Content-Range: bytes {from}-{end}/{size}` against the request.
fn range_start(url: &str, headers: &HeaderMap, from: u64, size: u64) -> Result<u64, HubError> {
    let value = headers.get("content-range").map(|v| String::from_utf8_lossy(v.as_bytes()));
    let parsed = value.as_deref().and_then(|v| {
        let (range, total) = v.strip_prefix("bytes ")?.split_once('/')?;
        let (start, _) = range.split_once('-')?;
        Some((start.trim().parse::<u64>().ok()?, total.trim()))
    });
    match parsed {
        Some((start, total)) if start == from && (total == "*" || total == size.to_string()) => {
            Ok(start)
        }
        _ => Err(HubError::Header {
            url: url.into(),
            header: "Content-Range",
            expected: "the requested range of the announced size",
            found: value.map_or_else(|| "missing".into(), |v| v.into_owned()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_targets_resolve_like_a_browser() {
        let base = "https://hub.example/a/resolve/main/f.bin";
        assert_eq!(resolve(base, "https://cdn.example/x?y=1"), "https://cdn.example/x?y=1");
        assert_eq!(
            resolve(base, "/b/resolve/main/f.bin"),
            "https://hub.example/b/resolve/main/f.bin"
        );
        assert_eq!(resolve(base, "g.bin"), "https://hub.example/a/resolve/main/g.bin");
        assert_eq!(resolve("http://h:1", "x"), "http://h:1/x");
    }

    #[test]
    fn etags_are_unquoted_and_checked() {
        let mut headers = HeaderMap::new();
        let hex = "AB".repeat(32);
        headers.insert(LINKED_ETAG, format!("W/\"{hex}\"").parse().unwrap());
        assert_eq!(sha256("u", &headers).unwrap(), Some(hex.to_ascii_lowercase()));
        headers.insert(LINKED_ETAG, "\"abc\"".parse().unwrap());
        let err = sha256("u", &headers).unwrap_err();
        assert!(err.to_string().contains("X-Linked-Etag"), "{err}");
    }

    #[test]
    fn content_range_must_match_the_request() {
        let mut headers = HeaderMap::new();
        headers.insert("content-range", "bytes 100-199/200".parse().unwrap());
        assert_eq!(range_start("u", &headers, 100, 200).unwrap(), 100);
        assert!(range_start("u", &headers, 50, 200).is_err());
        assert!(range_start("u", &headers, 100, 300).is_err());
        assert!(range_start("u", &HeaderMap::new(), 100, 200).is_err());
    }
}
