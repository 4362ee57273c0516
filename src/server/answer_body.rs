//! Keeps a Fetch answer's delivery credit counted until the answer's bytes
//! have left the process (issue 13, SPEC §4: what a tenant pins in the
//! broker stays within its plan's limit).
//!
//! hyper hands a response body's data to h2, which buffers it per stream
//! until the client's flow-control window lets it out, and drops the body
//! once it has handed over the last frame. A client that never reads its
//! stream therefore keeps the answer in h2's send buffer after the body is
//! gone (and after the messages' locks ended), so neither the body nor the
//! locks say when the bytes are really gone.
//!
//! The data itself does: this layer takes the broker's
//! [`AnswerCredit`] out of the response's extensions (put there by the
//! Fetch handler) and hands every data frame of the body on as a [`Bytes`]
//! whose owner carries a clone of the credit ([`Bytes::from_owner`], zero
//! copy). h2 drops a frame's buffer once it has written all of it to the
//! connection, or discarded it (the stream reset, the connection closed),
//! so the credit's last clone goes exactly when the answer's bytes stop
//! being pinned. Nothing here knows HTTP/2: it only relies on a buffer
//! living as long as someone holds it. Answers without a credit pass
//! through untouched.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tower::util::MapResponseLayer;

use crate::broker::subscription::AnswerCredit;

/// The layer (outermost, so every route's answers pass it).
pub(super) type AnswerBodyLayer = MapResponseLayer<Wrap>;

/// What the layer does to each response.
pub(super) type Wrap = fn(http::Response<tonic::body::Body>) -> http::Response<AnswerBody>;

/// The layer over every route.
pub(super) fn layer() -> AnswerBodyLayer {
    MapResponseLayer::new(wrap as Wrap)
}

/// Moves the response's credit, if it has one, into its body.
fn wrap(response: http::Response<tonic::body::Body>) -> http::Response<AnswerBody> {
    let (mut parts, inner) = response.into_parts();
    let credit = parts.extensions.remove::<AnswerCredit>();
    http::Response::from_parts(parts, AnswerBody { inner, credit })
}

/// A response body whose data keeps the answer's credit alive.
pub struct AnswerBody {
    inner: tonic::body::Body,
    credit: Option<AnswerCredit>,
}

/// A frame's bytes and the credit they keep (the owner of a [`Bytes`]).
struct Charged {
    bytes: Bytes,
    _credit: AnswerCredit,
}

impl AsRef<[u8]> for Charged {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Body for AnswerBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let Some(credit) = &this.credit else {
            return polled;
        };
        polled.map(|frame| {
            frame.map(|frame| {
                frame.map(|frame| {
                    frame.map_data(|bytes| {
                        Bytes::from_owner(Charged {
                            bytes,
                            _credit: credit.clone(),
                        })
                    })
                })
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::quota::admission::DeliveryPool;

    /// A body of one data frame.
    struct One(Option<Bytes>);

    impl Body for One {
        type Data = Bytes;
        type Error = tonic::Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn the_credit_goes_when_the_body_and_every_frame_it_gave_are_gone() {
        let pool = Arc::new(DeliveryPool::new());
        assert_eq!(pool.reserve(100, u64::MAX), 100);
        let inner = tonic::body::Body::new(One(Some(Bytes::from(vec![7u8; 100]))));
        let mut response = http::Response::new(inner);
        response
            .extensions_mut()
            .insert(AnswerCredit::new(pool.clone(), 100));
        let mut body = wrap(response).into_body();
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let data = frame.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&data[..], &[7u8; 100][..]);
        drop(body);
        assert_eq!(pool.used(), 100, "the frame is still in the send path");
        drop(data);
        assert_eq!(pool.used(), 0);
    }

    #[tokio::test]
    async fn an_answer_without_credit_passes_through() {
        let inner = tonic::body::Body::new(One(Some(Bytes::from_static(b"abc"))));
        let mut body = wrap(http::Response::new(inner)).into_body();
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let data = frame.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&data[..], b"abc");
    }
}
