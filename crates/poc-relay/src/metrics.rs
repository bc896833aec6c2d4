//! Counters, and a loopback-only endpoint serving them in the Prometheus
//! text exposition format (version 0.0.4).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::server::StoreHandle;
use crate::wire::Refusal;

/// The relay's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Envelopes stored.
    pub deposits: AtomicU64,
    /// Bytes of envelopes stored.
    pub deposited_bytes: AtomicU64,
    /// Fetch requests served.
    pub fetches: AtomicU64,
    /// Envelopes handed out in pages.
    pub fetched: AtomicU64,
    /// Envelopes deleted on acknowledgement.
    pub acked: AtomicU64,
    /// Envelopes dropped unread at expiry.
    pub expired: AtomicU64,
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections closed at once because their client already held
    /// `max_connections_per_client`.
    pub connections_over_client_limit: AtomicU64,
    /// Fetches and acknowledgements held back for their client's read rate.
    pub reads_paced: AtomicU64,
    refusals: [AtomicU64; Refusal::ALL.len()],
}

impl Metrics {
    /// Counts a refusal.
    pub fn refused(&self, refusal: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == refusal)
            && let Some(counter) = self.refusals.get(i)
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Refusals of one kind so far.
    pub fn refusals(&self, refusal: Refusal) -> u64 {
        Refusal::ALL
            .iter()
            .position(|r| *r == refusal)
            .and_then(|i| self.refusals.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The text exposition, with the store's current totals and, where the
    /// store knows it, what it takes on the disk.
    pub fn render(
        &self,
        stored_envelopes: u64,
        stored_bytes: u64,
        disk_bytes: Option<u64>,
    ) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, value) in lines {
                out.push_str(&format!("{name}{labels} {value}\n"));
            }
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let one = |v: u64| vec![(String::new(), v)];
        metric(
            "poc_relay_deposits_total",
            "counter",
            "Envelopes stored.",
            &one(get(&self.deposits)),
        );
        metric(
            "poc_relay_deposited_bytes_total",
            "counter",
            "Bytes of envelopes stored.",
            &one(get(&self.deposited_bytes)),
        );
        metric(
            "poc_relay_fetches_total",
            "counter",
            "Fetch requests served.",
            &one(get(&self.fetches)),
        );
        metric(
            "poc_relay_fetched_envelopes_total",
            "counter",
            "Envelopes handed out in fetched pages.",
            &one(get(&self.fetched)),
        );
        metric(
            "poc_relay_acked_total",
            "counter",
            "Envelopes deleted after the recipient acknowledged them.",
            &one(get(&self.acked)),
        );
        metric(
            "poc_relay_expired_total",
            "counter",
            "Envelopes dropped unread at expiry.",
            &one(get(&self.expired)),
        );
        let refusals: Vec<_> = Refusal::ALL
            .iter()
            .map(|r| (format!("{{reason=\"{}\"}}", r.label()), self.refusals(*r)))
            .collect();
        metric(
            "poc_relay_refusals_total",
            "counter",
            "Requests refused, by reason.",
            &refusals,
        );
        metric(
            "poc_relay_stored_envelopes",
            "gauge",
            "Envelopes held now.",
            &one(stored_envelopes),
        );
        metric(
            "poc_relay_stored_bytes",
            "gauge",
            "Bytes of envelopes held now.",
            &one(stored_bytes),
        );
        if let Some(disk_bytes) = disk_bytes {
            metric(
                "poc_relay_store_disk_bytes",
                "gauge",
                "Bytes of the store's files now (the log keeps up to about twice the bytes held, plus two segments).",
                &one(disk_bytes),
            );
        }
        metric(
            "poc_relay_connections",
            "gauge",
            "Authenticated client connections open now.",
            &one(get(&self.connections)),
        );
        metric(
            "poc_relay_connections_over_client_limit_total",
            "counter",
            "Connections closed at once: their client already held as many as it may.",
            &one(get(&self.connections_over_client_limit)),
        );
        metric(
            "poc_relay_reads_paced_total",
            "counter",
            "Fetches and acknowledgements held back for their client's read rate.",
            &one(get(&self.reads_paced)),
        );
        out
    }
}

/// Serves `GET /metrics` on `listener` (bound to loopback by the caller)
/// until the task is aborted. One small request per connection.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, store: StoreHandle) {
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: retrying at once would spin
                // a core until it passes.
                tracing::warn!(error = %e, "metrics endpoint cannot accept; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        let store = store.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1024];
            let mut len = 0;
            // The request line and headers, bounded in size and time.
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while len < buf.len() {
                    let Some(rest) = buf.get_mut(len..) else {
                        break;
                    };
                    match stream.read(rest).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => len += n,
                    }
                    if buf
                        .get(..len)
                        .is_some_and(|b| b.windows(4).any(|w| w == b"\r\n\r\n"))
                    {
                        break;
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let head = buf.get(..len).unwrap_or_default();
            let response = if head.starts_with(b"GET /metrics ") || head.starts_with(b"GET / ") {
                let usage = store.totals().await.unwrap_or_default();
                let disk_bytes = store.disk_bytes().await;
                let body = metrics.render(usage.envelopes, usage.bytes, disk_bytes);
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Binds the metrics listener; refuses anything but a loopback address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("metrics_listen {addr} must be a loopback address"),
        ));
    }
    tokio::net::TcpListener::bind(addr).await
}
