//! A loopback HTTP/1.1 server written on raw TCP, so tests control every byte and every
//! packet boundary of a provider's answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

#[path = "../common/loopback.rs"]
mod loopback;

pub use loopback::{response, sse_head};
// Not every test that includes this server streams Anthropic's events.
#[allow(unused_imports)]
pub use loopback::sse_event;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("request body is JSON")
    }
}

pub enum Reply {
    /// Writes each part as its own TCP write, `gap` apart, then closes.
    Parts(Vec<Vec<u8>>, Duration),
    /// Writes the parts, then neither writes nor closes.
    Stall(Vec<Vec<u8>>),
    /// Writes the parts, then resets the connection (RST).
    ResetAfter(Vec<Vec<u8>>),
}

type Handler = dyn Fn(usize, &Recorded) -> Reply + Send + Sync;

pub struct Server {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    pub peak_active: Arc<AtomicUsize>,
}

impl Server {
    pub async fn start(
        handler: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let active = Arc::new(AtomicUsize::new(0));
        let peak_active = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (reqs, act, peak) = (requests.clone(), active.clone(), peak_active.clone());
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let (handler, reqs, act, peak) =
                    (handler.clone(), reqs.clone(), act.clone(), peak.clone());
                tokio::spawn(async move {
                    let now = act.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    serve(socket, handler, reqs).await;
                    act.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Server {
            addr,
            requests,
            peak_active,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn request(&self, i: usize) -> Recorded {
        self.requests.lock().unwrap()[i].clone()
    }
}

async fn read_request(socket: &mut TcpStream) -> Option<Recorded> {
    let (head, body) = loopback::read_request(socket).await?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Recorded {
        method,
        target,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

async fn serve(mut socket: TcpStream, handler: Arc<Handler>, reqs: Arc<Mutex<Vec<Recorded>>>) {
    let Some(req) = read_request(&mut socket).await else {
        return;
    };
    let index = {
        let mut r = reqs.lock().unwrap();
        r.push(req.clone());
        r.len() - 1
    };
    let _ = socket.set_nodelay(true);
    match handler(index, &req) {
        Reply::Parts(parts, gap) => loopback::write_parts(&mut socket, &parts, gap).await,
        Reply::Stall(parts) => {
            for part in parts {
                let _ = socket.write_all(&part).await;
            }
            std::future::pending::<()>().await;
        }
        Reply::ResetAfter(parts) => {
            for part in parts {
                let _ = socket.write_all(&part).await;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            let _ = socket.set_zero_linger();
            drop(socket);
        }
    }
}

pub fn json(status: u16, headers: &[(&str, &str)], body: &Value) -> Reply {
    Reply::Parts(
        vec![response(
            status,
            headers,
            "application/json",
            &body.to_string(),
        )],
        Duration::ZERO,
    )
}

/// Splits `body` into TCP writes at awkward places: every `step` bytes, so boundaries fall
/// inside field names, JSON strings and between `\r` and `\n`.
pub fn split(body: &str, step: usize) -> Vec<Vec<u8>> {
    body.as_bytes().chunks(step).map(<[u8]>::to_vec).collect()
}

/// An SSE response: head, then the body in awkward pieces with small gaps.
pub fn sse(body: &str, step: usize) -> Reply {
    let mut parts = vec![sse_head()];
    parts.extend(split(body, step));
    Reply::Parts(parts, Duration::from_millis(1))
}
