//! The registry proxy: the only way out of a sandbox whose profile allows network to named hosts
//! (the dependency-fetch profile). The agent runs it on a unix socket in a private folder; inside the
//! sandbox, which has its own empty network namespace, the helper forwards `127.0.0.1:<port>` to that
//! socket and points `HTTPS_PROXY` at it ([`super::confine`]). The proxy accepts only
//! `CONNECT host:443` for the hosts the profile allows (exactly, or as a subdomain of an entry written
//! `*.example.org`), resolves the name itself and refuses any address that is not public (loopback,
//! private ranges, link-local cloud metadata, CGNAT, multicast, unspecified), so a manifest that
//! names `http://127.0.0.1:5432/` or `169.254.169.254` reaches nothing. With `HTTPS_PROXY` set in the
//! agent's own environment it chains through that proxy (the host check still applies).
//!
//! It must never forward a request it has not checked, nor read more than a bounded request head.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The most bytes of a request head read before the proxy gives up on it.
const MAX_HEAD: usize = 16 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const HEAD_TIMEOUT: Duration = Duration::from_secs(15);

/// A running proxy; stopped (and its socket removed) when dropped.
pub struct RegistryProxy {
    socket: PathBuf,
    folder: tempfile::TempDir,
    state: Arc<State>,
}

struct State {
    allow: Vec<String>,
    stop: AtomicBool,
    /// What was refused since the last [`RegistryProxy::take_refusals`], one line each.
    refused: Mutex<Vec<String>>,
    upstream: Option<String>,
}

impl RegistryProxy {
    /// Listen on a fresh unix socket; `allow` are host names, or `*.domain` for its subdomains.
    pub fn start(allow: Vec<String>) -> std::io::Result<Self> {
        let folder = tempfile::Builder::new().prefix("agent-proxy-").tempdir()?;
        let socket = folder.path().join("proxy.sock");
        let listener = UnixListener::bind(&socket)?;
        let state = Arc::new(State {
            allow: allow.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
            stop: AtomicBool::new(false),
            refused: Mutex::new(Vec::new()),
            upstream: upstream_proxy(),
        });
        let shared = Arc::clone(&state);
        std::thread::Builder::new()
            .name("registry-proxy".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if shared.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let state = Arc::clone(&shared);
                    let _ = std::thread::Builder::new()
                        .name("registry-proxy-conn".into())
                        .spawn(move || serve(client, &state));
                }
            })?;
        Ok(Self {
            socket,
            folder,
            state,
        })
    }

    /// The folder holding the socket (bound into the sandbox).
    pub fn folder(&self) -> &Path {
        self.folder.path()
    }

    /// The socket's file name inside [`Self::folder`].
    pub fn socket_name(&self) -> &'static str {
        "proxy.sock"
    }

    /// The hosts it lets through.
    pub fn allowed(&self) -> &[String] {
        &self.state.allow
    }

    /// What it refused since the last call, e.g. "evil.example:443 (not an allowed registry host)".
    pub fn take_refusals(&self) -> Vec<String> {
        self.state
            .refused
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }
}

impl Drop for RegistryProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.socket);
    }
}

/// `HTTPS_PROXY` (or `https_proxy`) of the agent's own environment, as `host:port`.
fn upstream_proxy() -> Option<String> {
    let value = ["HTTPS_PROXY", "https_proxy"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))?;
    let rest = value
        .strip_prefix("http://")
        .unwrap_or(&value)
        .trim_end_matches('/');
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    Some(if rest.contains(':') {
        rest.to_string()
    } else {
        format!("{rest}:80")
    })
}

fn serve(client: UnixStream, state: &State) {
    let _ = client.set_read_timeout(Some(HEAD_TIMEOUT));
    let Ok(reader_half) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader_half.take(MAX_HEAD as u64));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Drain the rest of the head (headers end with an empty line).
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
            Err(_) => return,
        }
    }
    // Bytes the client sent after its head without waiting (an early TLS hello) go first.
    let early = reader.buffer().to_vec();
    drop(reader);
    let mut client = client;
    let target = match check(&request_line, &state.allow) {
        Ok(target) => target,
        Err(why) => {
            refuse(&mut client, state, &why);
            return;
        }
    };
    let upstream = match &state.upstream {
        Some(proxy) => connect_via(proxy, &target),
        None => connect_public(&target),
    };
    let mut server = match upstream {
        Ok(server) => server,
        Err(why) => {
            refuse(
                &mut client,
                state,
                &format!("{}:{} ({why})", target.0, target.1),
            );
            return;
        }
    };
    let _ = client.set_read_timeout(None);
    if client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .is_err()
    {
        return;
    }
    if !early.is_empty() && server.write_all(&early).is_err() {
        return;
    }
    splice(client, server);
}

/// Parse `CONNECT host:port HTTP/1.x` and check the host; `Ok((host, port))`.
fn check(request_line: &str, allow: &[String]) -> Result<(String, u16), String> {
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(authority)) = (parts.next(), parts.next()) else {
        return Err("an empty or malformed request".into());
    };
    if !method.eq_ignore_ascii_case("CONNECT") {
        let shown: String = authority.chars().take(120).collect();
        return Err(format!(
            "{method} {shown} (only HTTPS through CONNECT is allowed)"
        ));
    }
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("{authority} (no port)"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{authority} (bad port)"))?;
    if port != 443 {
        return Err(format!("{host}:{port} (only port 443 is allowed)"));
    }
    if !host_allowed(&host, allow) {
        return Err(format!("{host}:{port} (not an allowed registry host)"));
    }
    Ok((host, port))
}

fn host_allowed(host: &str, allow: &[String]) -> bool {
    // A literal address is never a registry name, whatever the list says.
    if host.parse::<IpAddr>().is_ok() || host.is_empty() {
        return false;
    }
    allow.iter().any(|entry| match entry.strip_prefix("*.") {
        Some(domain) => host
            .strip_suffix(domain)
            .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1),
        None => host == entry,
    })
}

fn refuse(client: &mut UnixStream, state: &State, why: &str) {
    if let Ok(mut refused) = state.refused.lock() {
        if refused.len() < 100 {
            refused.push(why.to_string());
        }
    }
    let body = format!("refused by the agent's registry proxy: {why}\n");
    let _ = write!(
        client,
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Resolve and connect to the first public address of the host.
fn connect_public((host, port): &(String, u16)) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = (host.as_str(), *port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    let public: Vec<&SocketAddr> = addrs.iter().filter(|a| is_public(a.ip())).collect();
    if public.is_empty() {
        return Err(format!(
            "resolves only to non-public addresses {addrs:?}; refused"
        ));
    }
    let mut last = String::new();
    for addr in public {
        match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// Tunnel through the agent's own upstream proxy.
fn connect_via(proxy: &str, (host, port): &(String, u16)) -> Result<TcpStream, String> {
    let mut stream =
        TcpStream::connect(proxy).map_err(|e| format!("upstream proxy {proxy}: {e}"))?;
    let _ = stream.set_read_timeout(Some(CONNECT_TIMEOUT));
    write!(
        stream,
        "CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
    )
    .map_err(|e| format!("upstream proxy {proxy}: {e}"))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < MAX_HEAD {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return Err(format!("upstream proxy {proxy} closed the tunnel")),
        }
    }
    let status = String::from_utf8_lossy(&head);
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!(
            "upstream proxy {proxy} answered {}",
            status.lines().next().unwrap_or("")
        ));
    }
    let _ = stream.set_read_timeout(None);
    Ok(stream)
}

/// Copy both ways until either side closes.
pub(super) fn splice(client: UnixStream, server: TcpStream) {
    let (Ok(mut client_read), Ok(mut server_write)) = (client.try_clone(), server.try_clone())
    else {
        return;
    };
    let upload = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(Shutdown::Write);
    });
    let (mut server_read, mut client_write) = (server, client);
    let _ = std::io::copy(&mut server_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Write);
    let _ = upload.join();
}

/// Is `ip` an address on the public internet (not this machine, its networks, or its cloud's
/// metadata service)?
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && !is_public_v4(embedded_v4(v6))
                || v6.segments()[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible
        }
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Ipv4Addr {
    let s = v6.segments();
    Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8)
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow() -> Vec<String> {
        vec!["pypi.org".into(), "*.crates.io".into()]
    }

    #[test]
    fn only_connect_to_allowed_hosts_on_443_passes() {
        assert_eq!(
            check("CONNECT pypi.org:443 HTTP/1.1\r\n", &allow()),
            Ok(("pypi.org".into(), 443))
        );
        assert!(check("CONNECT index.crates.io:443 HTTP/1.1", &allow()).is_ok());
        for bad in [
            "CONNECT crates.io:443 HTTP/1.1", // `*.` means subdomains only
            "CONNECT evilcrates.io:443 HTTP/1.1",
            "CONNECT pypi.org.evil.example:443 HTTP/1.1",
            "CONNECT pypi.org:22 HTTP/1.1",
            "CONNECT 127.0.0.1:443 HTTP/1.1",
            "CONNECT [::1]:443 HTTP/1.1",
            "GET http://pypi.org/simple/ HTTP/1.1",
            "CONNECT pypi.org HTTP/1.1",
            "",
        ] {
            assert!(check(bad, &allow()).is_err(), "{bad:?} passed");
        }
        assert!(!host_allowed("x.crates.io", &["*.".into()]));
    }

    #[test]
    fn host_addresses_are_not_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(
                !is_public(private.parse().unwrap()),
                "{private} counted as public"
            );
        }
        for public in ["151.101.0.223", "2a04:4e42::223", "203.0.113.80"] {
            assert!(is_public(public.parse().unwrap()), "{public} refused");
        }
    }
}
