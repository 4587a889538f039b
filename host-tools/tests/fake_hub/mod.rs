//! A loopback stand-in for the Hugging Face hub, as the download code sees it:
//! `/{repo}/resolve/main/{file}` answers a small file directly (`Content-Length`, a git-blob
//! `ETag`) and an LFS file with a 302 to `/cdn/{repo}/{file}` carrying `X-Linked-Size` and
//! `X-Linked-Etag` (its sha256, quoted), as the hub does; both serve `Range` requests. Every
//! request is logged with the bytes of body written, and a fault can be armed for the next
//! body of an LFS file: drop the connection or stall after some bytes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// What goes wrong on the next LFS body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection after this many body bytes.
    DropAfter(u64),
    /// Send this many body bytes, then nothing until the client gives up.
    StallAfter(u64),
}

/// One request as served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    /// `GET` or `HEAD`.
    pub method: String,
    /// The path asked.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The status answered.
    pub status: u16,
    /// Body bytes written.
    pub served: u64,
}

struct File {
    bytes: Arc<Vec<u8>>,
    lfs: bool,
    sha256: String,
}

#[derive(Default)]
struct State {
    files: HashMap<String, File>,
    fault: Option<Fault>,
    log: Vec<Logged>,
    /// Connections accepted and not yet logged.
    active: usize,
}

/// The running server; it lives as long as the test process.
pub struct FakeHub {
    url: String,
    state: Arc<Mutex<State>>,
}

impl FakeHub {
    /// Serves `files` (name, bytes, whether it is an LFS file) of `repo` on a free port.
    pub fn start(repo: &str, files: Vec<(&str, Vec<u8>, bool)>) -> Self {
        let mut state = State::default();
        for (name, bytes, lfs) in files {
            let sha256 = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
            let file = File { bytes: Arc::new(bytes), lfs, sha256 };
            state.files.insert(format!("{repo}/{name}"), file);
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(state));
        let shared = Arc::clone(&state);
        let base = url.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                shared.lock().unwrap().active += 1;
                let (state, base) = (Arc::clone(&shared), base.clone());
                thread::spawn(move || serve(stream, &state, &base));
            }
        });
        Self { url, state }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Arms a fault for the next body of an LFS file.
    pub fn fault(&self, fault: Fault) {
        self.lock().fault = Some(fault);
    }

    /// Makes the hub announce a wrong sha256 for `repo`'s `file` from now on.
    pub fn announce_wrong_sha256(&self, repo: &str, file: &str) {
        self.lock().files.get_mut(&format!("{repo}/{file}")).unwrap().sha256 = "0".repeat(64);
    }

    /// Every request so far, once every accepted connection has been answered and closed.
    pub fn log(&self) -> Vec<Logged> {
        let started = Instant::now();
        loop {
            let state = self.lock();
            if state.active == 0 {
                return state.log.clone();
            }
            drop(state);
            assert!(started.elapsed() < Duration::from_secs(10), "a connection never closed");
            thread::sleep(Duration::from_millis(1));
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

/// Answers one request, then closes the connection.
fn serve(mut stream: TcpStream, state: &Mutex<State>, base: &str) {
    let Some((method, path, range)) = read_request(&stream) else {
        state.lock().unwrap().active -= 1;
        return;
    };
    let mut entry =
        Logged { method: method.clone(), path: path.clone(), range, status: 0, served: 0 };
    let (resolve, cdn) = (path.split_once("/resolve/main/"), path.strip_prefix("/cdn/"));
    let key = match (resolve, cdn) {
        (Some((repo, file)), _) => format!("{}/{file}", repo.trim_start_matches('/')),
        (None, Some(key)) => key.to_owned(),
        (None, None) => String::new(),
    };
    let found =
        state.lock().unwrap().files.get(&key).map(|f| (f.bytes.clone(), f.lfs, f.sha256.clone()));
    let head = method == "HEAD";
    match found {
        None => {
            entry.status = 404;
            respond(&mut stream, 404, &[], b"Entry not found", head, None, &mut entry.served);
        }
        Some((bytes, true, sha256)) if resolve.is_some() => {
            entry.status = 302;
            let headers = [
                ("Location", format!("{base}/cdn/{key}")),
                ("X-Linked-Size", bytes.len().to_string()),
                ("X-Linked-Etag", format!("\"{sha256}\"")),
                ("ETag", format!("\"{sha256}\"")),
            ];
            respond(&mut stream, 302, &headers, b"", head, None, &mut entry.served);
        }
        Some((bytes, lfs, _)) => {
            let fault = if lfs && !head { state.lock().unwrap().fault.take() } else { None };
            let etag = ("ETag", format!("\"{}\"", "b".repeat(40)));
            entry.status = match parse_range(entry.range.as_deref(), bytes.len()) {
                Some((start, end)) => {
                    let content_range = format!("bytes {start}-{}/{}", end - 1, bytes.len());
                    let headers = [etag, ("Content-Range", content_range)];
                    let body = &bytes[start..end];
                    respond(&mut stream, 206, &headers, body, head, fault, &mut entry.served);
                    206
                }
                None => {
                    respond(&mut stream, 200, &[etag], &bytes, head, fault, &mut entry.served);
                    200
                }
            };
        }
    }
    let mut state = state.lock().unwrap();
    state.log.push(entry);
    state.active -= 1;
}

/// Method, path and `Range` of the request on `stream`.
fn read_request(stream: &TcpStream) -> Option<(String, String, Option<String>)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut range = None;
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_owned());
        }
    }
    Some((method, path, range))
}

/// `bytes=START-[END]` as a half-open range within `len`.
fn parse_range(range: Option<&str>, len: usize) -> Option<(usize, usize)> {
    let (start, end) = range?.strip_prefix("bytes=")?.split_once('-')?;
    let start: usize = start.parse().ok()?;
    let end = if end.is_empty() { len } else { end.parse::<usize>().ok()? + 1 };
    (start < len && end <= len && start < end).then_some((start, end))
}

/// Writes a response; a fault cuts the body short. Adds the body bytes written to `served`.
fn respond(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
    head: bool,
    fault: Option<Fault>,
    served: &mut u64,
) {
    let reason = match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        _ => "Not Found",
    };
    let mut text = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("Connection: close\r\n\r\n");
    if stream.write_all(text.as_bytes()).is_err() || head {
        return;
    }
    let cut = match fault {
        Some(Fault::DropAfter(n) | Fault::StallAfter(n)) => (n as usize).min(body.len()),
        None => body.len(),
    };
    if stream.write_all(&body[..cut]).and_then(|()| stream.flush()).is_err() {
        return;
    }
    *served += cut as u64;
    if let Some(Fault::StallAfter(_)) = fault {
        // Hold the connection open, silent, until the client hangs up.
        let _ = stream.read(&mut [0; 1]);
    }
}
