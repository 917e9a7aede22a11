//! One SMTP socket, clear or encrypted: what `connection` (server side)
//! and the call-ahead and delivery clients read and write.
//!
//! A `Stream` starts `Plain` and is upgraded in place by `accept`
//! (STARTTLS or implicit TLS, server side) or `connect` (STARTTLS to a
//! downstream). The upgrade consumes the TCP stream: whatever the caller
//! had read and not used is the caller's to throw away (RFC 3207 §4.2:
//! nothing received before the handshake may count after it), and a
//! handshake that fails leaves `Closed` (no clear-text fallback on the same
//! connection: the bytes on the wire are no longer SMTP).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_rustls::{TlsAcceptor, TlsConnector};
use glommio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, CommonState, ServerConfig};

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::TlsStream<TcpStream>>),
    /// After a failed upgrade: every read is EOF, every write an error.
    Closed,
}

/// What was negotiated, for the Received header (RFC 3848, and the
/// version and cipher in a comment) and the mail log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// "TLSv1.3" or "TLSv1.2".
    pub version: &'static str,
    /// The IANA name, e.g. "TLS13_AES_256_GCM_SHA384".
    pub cipher: String,
    /// The peer's leaf certificate subject (RFC 4514), when it sent one:
    /// on the server side with a `*-verify` policy it was verified
    /// against `client_ca` (rustls refuses the handshake otherwise).
    pub peer_subject: Option<String>,
}

impl Stream {
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(tcp) => Some(tcp),
            Stream::Tls(tls) => Some(tls.get_ref().0),
            Stream::Closed => None,
        }
    }

    /// Server side: run the handshake on the plain stream.
    pub async fn accept(&mut self, config: Arc<ServerConfig>) -> io::Result<TlsInfo> {
        let tcp = self.take_plain()?;
        let tls = TlsAcceptor::from(config).accept(tcp).await?;
        *self = Stream::Tls(Box::new(tls.into()));
        Ok(self.info().expect("just upgraded"))
    }

    /// Client side: run the handshake on the plain stream for `name`.
    pub async fn connect(&mut self, config: Arc<ClientConfig>, name: ServerName<'static>) -> io::Result<TlsInfo> {
        let tcp = self.take_plain()?;
        let tls = TlsConnector::from(config).connect(name, tcp).await?;
        *self = Stream::Tls(Box::new(tls.into()));
        Ok(self.info().expect("just upgraded"))
    }

    /// The negotiated parameters; None while clear.
    pub fn info(&self) -> Option<TlsInfo> {
        match self {
            Stream::Tls(tls) => Some(info(tls.get_ref().1)),
            Stream::Plain(_) | Stream::Closed => None,
        }
    }

    fn take_plain(&mut self) -> io::Result<TcpStream> {
        match std::mem::replace(self, Stream::Closed) {
            Stream::Plain(tcp) => Ok(tcp),
            other => {
                *self = other;
                Err(io::Error::new(io::ErrorKind::InvalidInput, "TLS is already active"))
            }
        }
    }
}

fn info(state: &CommonState) -> TlsInfo {
    let version = match state.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    let cipher = state
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .unwrap_or("unknown")
        .to_string();
    let peer_subject = state.peer_certificates().and_then(|chain| chain.first()).map(|leaf| super::pem::subject(leaf));
    TlsInfo { version, cipher, peer_subject }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the TLS handshake failed; the connection is closed")
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Ok(0)),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }

    /// TLS: close_notify first (RFC 8446 §6.1), then the socket.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_close(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_close(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}
