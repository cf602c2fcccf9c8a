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
    /// A request body that makes no progress for this long is cut, so a
    /// client trickling a body cannot hold a call in flight.
    pub body_read_timeout: Duration,
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
            body_read_timeout: Duration::from_secs(15),
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

/// Counts open connections, in total and per client address. At the total
/// limit a new connection takes the place of the oldest one that has not
/// sent a whole request yet (a half-open or silent connection), so a flood
/// of those cannot lock out real clients; only when every connection is in
/// use is the new one refused.
#[derive(Debug)]
pub(crate) struct Tracker {
    options: ConnectionOptions,
    state: Mutex<State>,
    refused: AtomicU64,
    evicted: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// Open connections by age.
    open: std::collections::BTreeMap<u64, Entry>,
    /// Of `open`, those asked to close to make room.
    evicting: usize,
    per_client: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Entry {
    activity: Arc<Activity>,
    evict: Arc<tokio::sync::Notify>,
    evicted: bool,
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
            state: Mutex::new(State::default()),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn options(&self) -> &ConnectionOptions {
        &self.options
    }

    /// Connections open and not asked to close.
    pub fn open(&self) -> usize {
        let s = self.state();
        s.open.len() - s.evicting
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections closed to make room for a new one.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// A place for a new connection from `peer` doing `activity`, or why
    /// there is none.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, activity: Arc<Activity>) -> Result<Slot, Refused> {
        let peer = canonical(peer);
        let exempt = self
            .options
            .trusted_proxies
            .iter()
            .any(|n| n.contains(peer));
        let mut s = self.state();
        let refuse = |why| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Err(why)
        };
        if !exempt
            && s.per_client.get(&peer).copied().unwrap_or(0)
                >= self.options.max_connections_per_client
        {
            return refuse(Refused::PerClient);
        }
        if s.open.len() - s.evicting >= self.options.max_connections {
            let victim = s
                .open
                .values_mut()
                .find(|e| !e.evicted && e.activity.requests() == 0);
            match victim {
                Some(e) => {
                    e.evicted = true;
                    e.evict.notify_one();
                    s.evicting += 1;
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                }
                None => return refuse(Refused::Total),
            }
        }
        let id = s.next;
        s.next += 1;
        let evict = Arc::new(tokio::sync::Notify::new());
        s.open.insert(
            id,
            Entry {
                activity,
                evict: evict.clone(),
                evicted: false,
            },
        );
        if !exempt {
            *s.per_client.entry(peer).or_insert(0) += 1;
        }
        Ok(Slot {
            tracker: self.clone(),
            id,
            client: (!exempt).then_some(peer),
            evict,
        })
    }
}

/// One admitted connection; gives its place back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    tracker: Arc<Tracker>,
    id: u64,
    client: Option<IpAddr>,
    evict: Arc<tokio::sync::Notify>,
}

impl Slot {
    /// Resolves when the connection is to close at once to make room.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.tracker.state();
        if s.open.remove(&self.id).is_some_and(|e| e.evicted) {
            s.evicting -= 1;
        }
        if let Some(ip) = self.client
            && let Some(n) = s.per_client.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                s.per_client.remove(&ip);
            }
        }
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

pin_project_lite::pin_project! {
    /// A request body that fails when it makes no progress for `timeout`.
    pub(crate) struct BodyTimeout<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: tokio::time::Sleep,
        timeout: Duration,
    }
}

impl<B> BodyTimeout<B> {
    pub(crate) fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            sleep: tokio::time::sleep(timeout),
            timeout,
        }
    }
}

impl<B> http_body::Body for BodyTimeout<B>
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, tonic::Status>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            std::task::Poll::Ready(frame) => {
                this.sleep.as_mut().reset(Instant::now() + *this.timeout);
                std::task::Poll::Ready(
                    frame.map(|f| f.map_err(|e| tonic::Status::from_error(e.into()))),
                )
            }
            std::task::Poll::Pending => {
                if this.sleep.poll(cx).is_ready() {
                    return std::task::Poll::Ready(Some(Err(tonic::Status::deadline_exceeded(
                        format!(
                            "the request body made no progress for {} ms",
                            this.timeout.as_millis()
                        ),
                    ))));
                }
                std::task::Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Per connection: counts its requests, tags each with its client, and
/// bounds how long its body may stall.
#[derive(Clone)]
pub(crate) struct Tracked<S> {
    pub inner: S,
    pub activity: Arc<Activity>,
    pub peer: IpAddr,
    pub trusted: Arc<[IpNet]>,
    pub body_timeout: Duration,
}

impl<S, B> tower::Service<Request<B>> for Tracked<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
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
        let timeout = self.body_timeout;
        let req = req.map(|b| Body::new(BodyTimeout::new(b, timeout)));
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
        let busy = || {
            let activity = Activity::new();
            std::mem::forget(activity.begin());
            activity
        };
        let a1 = t.admit(a, busy()).expect("a1");
        let _a2 = t.admit(a, busy()).expect("a2");
        assert_eq!(t.admit(a, busy()).err(), Some(Refused::PerClient));
        let _b1 = t.admit(b, busy()).expect("b1");
        // Every connection is in use: no room.
        assert_eq!(t.admit(b, busy()).err(), Some(Refused::Total));
        drop(a1);
        assert_eq!(t.open(), 2);
        let _p = t
            .admit(proxy, busy())
            .expect("a proxy is exempt from the per-client cap");
        assert_eq!(t.refused(), 2);
    }

    #[tokio::test]
    async fn at_the_limit_the_oldest_connection_without_a_request_makes_room() {
        let t = Tracker::new(ConnectionOptions {
            max_connections: 2,
            max_connections_per_client: 2,
            ..ConnectionOptions::default()
        });
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let silent = t.admit(ip("192.0.2.1"), Activity::new()).expect("silent");
        let working = Activity::new();
        let _guard = working.begin();
        let _served = t.admit(ip("192.0.2.2"), working).expect("served");
        let newcomer = t.admit(ip("192.0.2.3"), Activity::new()).expect("newcomer");
        // The silent one is told to go; the one with a request stays.
        tokio::time::timeout(Duration::from_secs(1), silent.evicted())
            .await
            .expect("the silent connection was evicted");
        assert_eq!((t.open(), t.evicted()), (2, 1));
        drop(silent);
        // Now the newcomer is the only one without a request.
        let _next = t.admit(ip("192.0.2.4"), Activity::new()).expect("next");
        tokio::time::timeout(Duration::from_secs(1), newcomer.evicted())
            .await
            .expect("the newcomer was evicted in turn");
    }
}
