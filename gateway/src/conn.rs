//! Bounds on what one client can hold open: the number of connections (in
//! total and per client address), how long a connection may sit before its
//! first request or between requests, and which peers may name the client
//! in `X-Forwarded-For`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, Request, Response};
use tokio::time::Instant;
use tonic::body::Body;

/// Connection limits and timeouts of the listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionOptions {
    /// Connections held open at once; one past it is closed on accept.
    pub max_connections: usize,
    /// Connections from one client address at once (peers in
    /// `trusted_proxies` are exempt: they carry many clients).
    pub max_connections_per_client: usize,
    /// HTTP/1.1: the whole request head must arrive within this time, and an
    /// idle keep-alive connection is closed after it. Any protocol: the
    /// first request must start within it.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/2 with a GOAWAY, so clients reconnect cleanly).
    pub idle_timeout: Duration,
    /// HTTP/2 keep-alive pings: sent after this much silence ...
    pub http2_keepalive_interval: Duration,
    /// ... and the connection is closed when one is not answered in time.
    pub http2_keepalive_timeout: Duration,
    /// Peers whose `X-Forwarded-For` names the client (a load balancer, an
    /// ingress): addresses or CIDR blocks.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_client: 256,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(20),
            trusted_proxies: Vec::new(),
        }
    }
}

/// An address block: `10.0.0.0/8`, `::1/128`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an IP address or CIDR block");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener's view of IPv4
/// clients) as the IPv4 address, so limits and proxy lists see one client.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The client a request comes from: the peer, or for a trusted proxy the
/// nearest untrusted address of its `X-Forwarded-For`. In the request's
/// extensions for logs and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Walks `X-Forwarded-For` from the nearest hop outwards, past trusted
/// proxies; the first other address is the client.
pub(crate) fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = canonical(ip);
        if !is_trusted(client) {
            break;
        }
    }
    client
}

/// Counts open connections, in total and per client address.
#[derive(Debug)]
pub(crate) struct Tracker {
    options: ConnectionOptions,
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicU64,
}

/// Why a connection was closed on accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Total,
    PerClient,
}

impl Tracker {
    pub fn new(options: ConnectionOptions) -> Arc<Self> {
        Arc::new(Self {
            options,
            total: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        })
    }

    pub fn options(&self) -> &ConnectionOptions {
        &self.options
    }

    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// A place for a new connection from `peer`, or why there is none.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
        let peer = canonical(peer);
        let exempt = self
            .options
            .trusted_proxies
            .iter()
            .any(|n| n.contains(peer));
        let refuse = |why| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Err(why)
        };
        if self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.options.max_connections).then_some(n + 1)
            })
            .is_err()
        {
            return refuse(Refused::Total);
        }
        let slot = Slot {
            tracker: self.clone(),
            client: None,
        };
        if exempt {
            return Ok(slot);
        }
        let mut map = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(peer).or_insert(0);
        if *n >= self.options.max_connections_per_client {
            drop(map);
            drop(slot);
            return refuse(Refused::PerClient);
        }
        *n += 1;
        let mut slot = slot;
        slot.client = Some(peer);
        Ok(slot)
    }
}

/// One admitted connection; gives its place back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    tracker: Arc<Tracker>,
    client: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(ip) = self.client {
            let mut map = self
                .tracker
                .per_client
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
        self.tracker.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a connection is doing: requests in flight (until their response
/// bodies end) and since when it has been idle.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `epoch` when the last request ended.
    idle_since_ms: AtomicU64,
    requests: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        })
    }

    /// `None` while a request is in flight, else since when it is idle.
    pub fn idle_since(&self) -> Option<Instant> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| self.epoch + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire)))
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }
}

/// A request in flight; ends when its response body is done or dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since_ms
            .store(a.epoch.elapsed().as_millis() as u64, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight.
    struct Counted {
        #[pin]
        inner: Body,
        guard: Option<InFlight>,
    }
}

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, tonic::Status>>> {
        let this = self.project();
        let out = this.inner.poll_frame(cx);
        if let std::task::Poll::Ready(None) = out {
            this.guard.take();
        }
        out
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Per connection: counts its requests and tags each with its client.
#[derive(Clone)]
pub(crate) struct Tracked<S> {
    pub inner: S,
    pub activity: Arc<Activity>,
    pub peer: IpAddr,
    pub trusted: Arc<[IpNet]>,
}

impl<S, B> tower::Service<Request<B>> for Tracked<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Body>, S::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let guard = self.activity.begin();
        let client = client_addr(self.peer, req.headers(), &self.trusted);
        req.extensions_mut().insert(ClientAddr(client));
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            Ok(res.map(|inner| {
                Body::new(Counted {
                    inner,
                    guard: Some(guard),
                })
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("net")
    }

    #[test]
    fn blocks_contain_their_addresses() {
        assert!(net("10.0.0.0/8").contains("10.1.2.3".parse().expect("ip")));
        assert!(!net("10.0.0.0/8").contains("11.0.0.1".parse().expect("ip")));
        assert!(net("127.0.0.1").contains("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(net("0.0.0.0/0").contains("8.8.8.8".parse().expect("ip")));
        assert!(net("fd00::/8").contains("fd12::1".parse().expect("ip")));
        assert!(!net("fd00::/8").contains("10.0.0.1".parse().expect("ip")));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nonsense".parse::<IpNet>().is_err());
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7, 10.0.0.2"
                .parse()
                .expect("header"),
        );
        let trusted = [net("10.0.0.0/8")];
        let proxy: IpAddr = "10.0.0.1".parse().expect("ip");
        let stranger: IpAddr = "192.0.2.1".parse().expect("ip");
        // The nearest untrusted hop: a client cannot push itself further out.
        assert_eq!(
            client_addr(proxy, &h, &trusted),
            "198.51.100.7".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(client_addr(stranger, &h, &trusted), stranger);
        h.insert("x-forwarded-for", "garbage".parse().expect("header"));
        assert_eq!(client_addr(proxy, &h, &trusted), proxy);
    }

    #[test]
    fn slots_are_bounded_in_total_and_per_client() {
        let t = Tracker::new(ConnectionOptions {
            max_connections: 3,
            max_connections_per_client: 2,
            trusted_proxies: vec![net("10.0.0.1")],
            ..ConnectionOptions::default()
        });
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let proxy: IpAddr = "10.0.0.1".parse().expect("ip");
        let a1 = t.admit(a).expect("a1");
        let _a2 = t.admit(a).expect("a2");
        assert_eq!(t.admit(a).err(), Some(Refused::PerClient));
        let _b1 = t.admit(b).expect("b1");
        assert_eq!(t.admit(b).err(), Some(Refused::Total));
        drop(a1);
        assert_eq!(t.open(), 2);
        let _p = t
            .admit(proxy)
            .expect("a proxy is exempt from the per-client cap");
        assert_eq!(t.refused(), 2);
    }
}
