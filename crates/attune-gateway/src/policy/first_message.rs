//! The first message of a call, read from its body before the call is
//! forwarded, then handed on with the rest of the body unchanged: the policy
//! reads the customer ids from it; the backend receives the original bytes.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::Frame;
use http_body_util::BodyExt as _;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::Bytes;

/// gRPC's message prefix: a compressed flag and a 4-byte big-endian length.
const PREFIX: usize = 5;

/// What the body's first message turned out to be.
#[derive(Debug)]
pub(crate) enum FirstMessage {
    /// The whole encoded message.
    Plain(Bytes),
    /// Compressed: not readable here.
    Compressed,
    /// The body ended before a whole message.
    Missing,
}

/// Reads `body` until its first message is complete (or it ends). Returns the
/// message and a body replaying everything read, then the rest. A message
/// longer than `max_bytes` is refused without reading it.
pub(crate) async fn read(mut body: Body, max_bytes: usize) -> Result<(FirstMessage, Body), Status> {
    let mut buffered: Vec<u8> = Vec::new();
    let mut trailers = None;
    let mut ended = false;
    let complete = loop {
        if let Some(length) = declared_length(&buffered) {
            if length > max_bytes {
                return Err(Status::resource_exhausted(format!(
                    "message of {length} bytes is larger than the limit of {max_bytes}"
                )));
            }
            if buffered.len() >= PREFIX + length {
                break Some(length);
            }
        }
        match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => buffered.extend_from_slice(&data),
                Err(frame) => {
                    trailers = frame.into_trailers().ok();
                    ended = true;
                    break None;
                }
            },
            Some(Err(status)) => return Err(status),
            None => {
                ended = true;
                break None;
            }
        }
    };
    let head = Bytes::from(buffered);
    let message = match complete {
        Some(_) if head[0] != 0 => FirstMessage::Compressed,
        Some(length) => FirstMessage::Plain(head.slice(PREFIX..PREFIX + length)),
        None => FirstMessage::Missing,
    };
    let replay = Replay {
        head: (!head.is_empty()).then_some(head),
        trailers,
        rest: (!ended).then_some(body),
    };
    Ok((message, Body::new(replay)))
}

/// The length the message prefix declares, once the prefix is there.
fn declared_length(buffered: &[u8]) -> Option<usize> {
    let prefix: [u8; 4] = buffered.get(1..PREFIX)?.try_into().ok()?;
    usize::try_from(u32::from_be_bytes(prefix)).ok()
}

/// The bytes already read, then whatever the original body still holds.
struct Replay {
    head: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
    rest: Option<Body>,
}

impl http_body::Body for Replay {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(|rest| rest.is_end_stream())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    async fn collect(body: Body) -> Vec<u8> {
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn the_first_message_is_read_and_the_body_replayed_whole() {
        let mut bytes = framed(b"first");
        bytes.extend(framed(b"second"));
        let (message, body) = read(
            Body::new(http_body_util::Full::new(Bytes::from(bytes.clone()))),
            100,
        )
        .await
        .unwrap();
        assert!(matches!(message, FirstMessage::Plain(m) if &m[..] == b"first"));
        assert_eq!(collect(body).await, bytes);
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_refused_unread() {
        let bytes = framed(&[7; 64]);
        let error = read(Body::new(http_body_util::Full::new(Bytes::from(bytes))), 10)
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::ResourceExhausted);
    }

    #[tokio::test]
    async fn an_empty_body_has_no_message() {
        let (message, body) = read(Body::empty(), 10).await.unwrap();
        assert!(matches!(message, FirstMessage::Missing));
        assert!(collect(body).await.is_empty());
    }
}
