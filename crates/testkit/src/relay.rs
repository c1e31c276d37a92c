//! A TCP relay on loopback between a client and a server, for tests of
//! what a client does when a server's answers are lost: it passes bytes
//! both ways until [`Relay::drop_replies`], and from then on passes the
//! client's bytes on but throws the server's away. So a request still
//! reaches the server and is applied, and its answer never arrives, as
//! when a server's reply is lost in the network.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A running relay; its threads end with the connections they serve.
pub struct Relay {
    addr: SocketAddr,
    dropping: Arc<AtomicBool>,
}

impl Relay {
    /// Listens on a free loopback port and relays every connection to
    /// `server`.
    pub fn start(server: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let dropping = Arc::new(AtomicBool::new(false));
        let (server, flag) = (server.to_string(), dropping.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(upstream) = TcpStream::connect(&server) else {
                    continue;
                };
                let pair = (
                    client.try_clone().expect("a socket handle"),
                    upstream.try_clone().expect("a socket handle"),
                );
                let muted = Arc::new(AtomicBool::new(false));
                std::thread::spawn(move || pass(client, upstream, &muted));
                let flag = flag.clone();
                std::thread::spawn(move || pass(pair.1, pair.0, &flag));
            }
        });
        Self { addr, dropping }
    }

    /// `host:port` to give the client.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// From now on, the server's bytes are read and thrown away.
    pub fn drop_replies(&self) {
        self.dropping.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` into `to` (throwing the bytes away while `muted`) until
/// either side closes.
fn pass(mut from: TcpStream, mut to: TcpStream, muted: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if muted.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
