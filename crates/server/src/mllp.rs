//! The HL7 v2 listener: MLLP over TCP (optionally TLS). A frame is `0x0B` message `0x1C 0x0D`;
//! each message gets one acknowledgement frame, in order, on its connection (MLLP is
//! synchronous: a sender waits for the ACK before the next message). What a message means is
//! `app::adt`; this module only frames bytes and keeps connections bounded:
//!
//! - a message bigger than `max_message_bytes` is not read into memory: its first bytes are
//!   kept (for the header the ACK echoes), the rest skipped to the frame's end, and it is
//!   answered AR;
//! - a frame must arrive whole within `frame_timeout` of its first byte (noticed within half
//!   of it: a slow or half-open sender is disconnected), and a connection with no frame for
//!   `idle_timeout` is closed;
//! - at most `max_connections` at once; bytes outside a frame are ignored.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::codec::{Decoder, Encoder, Framed};

use crate::app::App;

const START: u8 = 0x0B;
const END: [u8; 2] = [0x1C, 0x0D];
/// How much of an oversized message is kept, to read its header.
const HEAD_BYTES: usize = 4096;

/// How the listener listens.
#[derive(Clone)]
pub struct MllpConfig {
    pub listen: SocketAddr,
    /// The largest message read (default 1 MiB); a bigger one is answered AR.
    pub max_message_bytes: usize,
    /// The longest a frame may take to arrive once begun (default 30 s).
    pub frame_timeout: Duration,
    /// How long a connection may stay without a frame before it is closed (default 10 min).
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// TLS, when configured (`--mllp-tls-cert`/`--mllp-tls-key`).
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl std::fmt::Debug for MllpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MllpConfig")
            .field("listen", &self.listen)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl MllpConfig {
    pub fn new(listen: SocketAddr) -> MllpConfig {
        MllpConfig {
            listen,
            max_message_bytes: 1024 * 1024,
            frame_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            max_connections: 256,
            tls: None,
        }
    }
}

/// A TLS server configuration from PEM files (a certificate chain and its private key).
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<tokio_rustls::rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("the TLS certificate and key: {e}"))?;
    Ok(Arc::new(config))
}

/// One frame read.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Message(Vec<u8>),
    /// A message over the limit: its first bytes and its size.
    TooLarge {
        head: Vec<u8>,
        size: usize,
    },
}

/// The MLLP codec: frames in, acknowledgements out.
#[derive(Debug)]
pub struct Mllp {
    max: usize,
    /// Inside a frame: the bytes kept, the bytes seen, and whether it is over the limit.
    open: Option<(Vec<u8>, usize, bool)>,
}

impl Mllp {
    pub fn new(max: usize) -> Mllp {
        Mllp { max, open: None }
    }

    /// Whether a frame has begun and not ended.
    pub fn in_frame(&self) -> bool {
        self.open.is_some()
    }
}

impl Decoder for Mllp {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        loop {
            let Some((body, seen, over)) = self.open.as_mut() else {
                // outside a frame: skip to the next start byte
                match src.iter().position(|b| *b == START) {
                    Some(i) => {
                        src.advance(i + 1);
                        self.open = Some((Vec::new(), 0, false));
                        continue;
                    }
                    None => {
                        src.clear();
                        return Ok(None);
                    }
                }
            };
            // the end of the frame: 0x1C 0x0D (a 0x1C as the buffer's last byte may begin it)
            let end = src.windows(2).position(|w| w == END);
            let take = match end {
                Some(i) => i,
                None => src
                    .len()
                    .saturating_sub(usize::from(src.last() == Some(&END[0]))),
            };
            let chunk = src.split_to(take);
            *seen += chunk.len();
            if !*over {
                if body.len() + chunk.len() > self.max {
                    *over = true;
                    body.truncate(HEAD_BYTES);
                    let room = HEAD_BYTES.saturating_sub(body.len()).min(chunk.len());
                    body.extend_from_slice(&chunk[..room]);
                } else {
                    body.extend_from_slice(&chunk);
                }
            }
            if end.is_none() {
                return Ok(None);
            }
            src.advance(2);
            let (body, seen, over) = self.open.take().expect("a frame is open");
            return Ok(Some(if over {
                Frame::TooLarge {
                    head: body,
                    size: seen,
                }
            } else {
                Frame::Message(body)
            }));
        }
    }
}

impl Encoder<String> for Mllp {
    type Error = std::io::Error;

    fn encode(&mut self, ack: String, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        dst.reserve(ack.len() + 3);
        dst.extend_from_slice(&[START]);
        dst.extend_from_slice(ack.as_bytes());
        dst.extend_from_slice(&END);
        Ok(())
    }
}

/// Binds the listener; the address it listens on (port 0 picks one).
pub async fn bind(config: &MllpConfig) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Accepts connections until the task is dropped; each runs on its own task.
pub async fn serve(listener: TcpListener, app: App, config: MllpConfig) {
    let permits = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "MLLP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "MLLP connection refused: too many connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, config, tls) = (app.clone(), config.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(config.frame_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => connection(s, peer, app, config).await,
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "MLLP TLS handshake failed")
                        }
                        Err(_) => tracing::info!(%peer, "MLLP TLS handshake timed out"),
                    }
                }
                None => connection(stream, peer, app, config).await,
            }
        });
    }
}

async fn connection<S>(stream: S, peer: SocketAddr, app: App, config: MllpConfig)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut framed = Framed::new(stream, Mllp::new(config.max_message_bytes));
    // checked every half frame timeout: a frame begun is noticed within that, so a frame
    // that does not arrive whole is cut off within one and a half frame timeouts
    let step = (config.frame_timeout / 2).max(Duration::from_millis(10));
    let mut idle_since = tokio::time::Instant::now();
    let mut frame_started: Option<tokio::time::Instant> = None;
    loop {
        let frame = match tokio::time::timeout(step, framed.next()).await {
            Err(_) => {
                if framed.codec().in_frame() {
                    let at = *frame_started.get_or_insert_with(tokio::time::Instant::now);
                    if at.elapsed() >= config.frame_timeout {
                        tracing::info!(%peer, "MLLP connection closed: a frame did not arrive in time");
                        return;
                    }
                } else if idle_since.elapsed() >= config.idle_timeout {
                    tracing::debug!(%peer, "MLLP connection closed: idle");
                    return;
                }
                continue;
            }
            Ok(None) => return,
            Ok(Some(Err(e))) => {
                tracing::info!(%peer, error = %e, "MLLP connection failed");
                return;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        frame_started = None;
        let started = std::time::Instant::now();
        let ack = match frame {
            Frame::Message(bytes) => {
                let (received, ack) =
                    crate::app::adt::receive(&app, &bytes, Some(peer.ip().to_string())).await;
                tracing::info!(
                    ack = received.code.code(),
                    bytes = bytes.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "HL7 message"
                );
                ack
            }
            Frame::TooLarge { head, size } => {
                tracing::info!(bytes = size, "HL7 message refused: too large");
                crate::app::adt::oversized(
                    &app,
                    &head,
                    size,
                    config.max_message_bytes,
                    Some(peer.ip().to_string()),
                )
                .await
            }
        };
        match tokio::time::timeout(config.frame_timeout, framed.send(ack)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        idle_since = tokio::time::Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut Mllp, input: &[u8]) -> Vec<Frame> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn frames_are_cut_at_their_end_bytes_whatever_the_chunks() {
        let two = b"\x0bMSH|one\r\x1c\x0d\n\x0bMSH|two\r\x1c\x0d";
        assert_eq!(
            decode_all(&mut Mllp::new(100), two),
            vec![
                Frame::Message(b"MSH|one\r".to_vec()),
                Frame::Message(b"MSH|two\r".to_vec())
            ]
        );
        // byte by byte, the end split across reads
        let mut codec = Mllp::new(100);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in two {
            buf.extend_from_slice(&[*b]);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], Frame::Message(b"MSH|two\r".to_vec()));
        // a 0x1C inside a message that is not followed by 0x0D is content
        assert_eq!(
            decode_all(&mut Mllp::new(100), b"\x0ba\x1cb\x1c\x0d"),
            vec![Frame::Message(b"a\x1cb".to_vec())]
        );
    }

    #[test]
    fn an_oversized_message_keeps_its_head_and_its_size() {
        let mut input = vec![START];
        input.extend_from_slice(b"MSH|^~\\&|A|B\r");
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend_from_slice(&END);
        input.extend_from_slice(b"\x0bMSH|next\r\x1c\x0d");
        let frames = decode_all(&mut Mllp::new(1000), &input);
        match &frames[0] {
            Frame::TooLarge { head, size } => {
                assert!(head.starts_with(b"MSH|^~\\&|A|B\r"));
                assert!(head.len() <= HEAD_BYTES);
                assert_eq!(*size, 10_013);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(frames[1], Frame::Message(b"MSH|next\r".to_vec()));
    }

    #[test]
    fn an_unfinished_frame_waits() {
        let mut codec = Mllp::new(100);
        let mut buf = BytesMut::from(&b"noise\x0bMSH|half"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(codec.in_frame());
    }
}
