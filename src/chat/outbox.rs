//! A member's outbox: what the hub has decided to send and the session has not written yet.
//!
//! Why not a tokio `mpsc` channel: a bounded channel allocates its first block of slots up front
//! (about a kilobyte) for every member, idle or not, and counts items, not lines. This queue
//! costs nothing until something is queued, gives all it holds to the session in one go (one
//! write per wake-up), and bounds what a member may have waiting in *lines*, however the hub
//! batches them.
//!
//! The hub [`push`](Outbox::push)es without ever waiting: when a member's queue is full the push
//! says so and the hub disconnects that member. The hub can [`close`](Outbox::close) it with a
//! last word that goes past the queue; the session's side closes it when the connection ends, so
//! later pushes report [`Push::Gone`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

/// The hub's end.
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// The session's end.
#[derive(Debug)]
pub struct Inbox {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    chunks: VecDeque<Bytes>,
    /// Lines in `chunks`.
    lines: usize,
    is_closed: bool,
    /// Sent after the queue, even when the queue was full.
    last_word: Option<Bytes>,
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued; this many lines are now waiting.
    Queued(usize),
    /// Not queued: it would take the member past its limit.
    Full,
    /// Not queued: the connection is gone.
    Gone,
}

/// A new outbox and its session end.
pub fn outbox() -> (Outbox, Inbox) {
    let shared = Arc::new(Shared::default());
    (
        Outbox {
            shared: shared.clone(),
        },
        Inbox { shared },
    )
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding this lock; if something did, the queue is still whole.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Outbox {
    /// Queues `chunk` (holding `lines` lines) unless that would make more than `limit` lines
    /// wait. Never waits.
    pub fn push(&self, chunk: Bytes, lines: usize, limit: usize) -> Push {
        let mut queue = self.shared.lock();
        if queue.is_closed {
            return Push::Gone;
        }
        if queue.lines + lines > limit && queue.lines > 0 {
            return Push::Full;
        }
        queue.chunks.push_back(chunk);
        queue.lines += lines;
        let waiting = queue.lines;
        drop(queue);
        self.shared.wake.notify_one();
        Push::Queued(waiting)
    }

    /// Closes the outbox: the session writes what is queued (and `last_word`, if any, even past
    /// a full queue), then ends.
    pub fn close(&self, last_word: Option<Bytes>) {
        let mut queue = self.shared.lock();
        queue.is_closed = true;
        if last_word.is_some() {
            queue.last_word = last_word;
        }
        drop(queue);
        self.shared.wake.notify_one();
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.close(None);
    }
}

impl Inbox {
    /// Waits for queued output and takes all of it as one buffer to write: the queued chunk
    /// itself when there is one (no copy; a fan-out chunk is shared by every member), else
    /// the chunks joined. `None` once the outbox is closed and everything (the last word
    /// included) has been taken.
    pub async fn take(&self) -> Option<Bytes> {
        loop {
            {
                let mut queue = self.shared.lock();
                if !queue.chunks.is_empty() {
                    queue.lines = 0;
                    // Drained: an idle member keeps no queue memory.
                    let mut chunks = std::mem::take(&mut queue.chunks);
                    drop(queue);
                    if chunks.len() == 1 {
                        return chunks.pop_front();
                    }
                    let mut joined = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
                    for chunk in chunks {
                        joined.extend_from_slice(&chunk);
                    }
                    return Some(joined.freeze());
                }
                if queue.is_closed {
                    return queue.last_word.take();
                }
            }
            self.shared.wake.notified().await;
        }
    }
}

impl Inbox {
    /// Completes when the hub has cut the member off with a last word: a session blocked
    /// writing to a member that does not read uses this to stop waiting for it.
    pub async fn kicked(&self) {
        loop {
            {
                let queue = self.shared.lock();
                if queue.is_closed && queue.last_word.is_some() {
                    return;
                }
            }
            self.shared.wake.notified().await;
        }
    }

    /// The last word, if the hub cut the member off with one.
    pub fn last_word(&self) -> Option<Bytes> {
        self.shared.lock().last_word.take()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        // The connection is gone: the hub's next push learns it.
        let mut queue = self.shared.lock();
        queue.is_closed = true;
        queue.chunks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pushes_are_taken_together_in_order() {
        let (outbox, inbox) = outbox();
        assert_eq!(
            outbox.push(Bytes::from_static(b"a\n"), 1, 10),
            Push::Queued(1)
        );
        assert_eq!(
            outbox.push(Bytes::from_static(b"b\nc\n"), 2, 10),
            Push::Queued(3)
        );
        assert_eq!(inbox.take().await.unwrap(), &b"a\nb\nc\n"[..]);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_the_last_word_still_goes_out() {
        let (outbox, inbox) = outbox();
        assert_eq!(
            outbox.push(Bytes::from_static(b"1\n"), 1, 2),
            Push::Queued(1)
        );
        assert_eq!(
            outbox.push(Bytes::from_static(b"2\n"), 1, 2),
            Push::Queued(2)
        );
        assert_eq!(outbox.push(Bytes::from_static(b"3\n"), 1, 2), Push::Full);
        outbox.close(Some(Bytes::from_static(b"bye\n")));
        assert_eq!(inbox.take().await.unwrap(), &b"1\n2\n"[..]);
        assert_eq!(inbox.take().await.unwrap(), &b"bye\n"[..]);
        assert_eq!(inbox.take().await, None);
    }

    #[tokio::test]
    async fn one_chunk_bigger_than_the_limit_still_fits_an_empty_queue() {
        let (outbox, inbox) = outbox();
        assert_eq!(
            outbox.push(Bytes::from_static(b"x\n"), 5, 2),
            Push::Queued(5)
        );
        drop(inbox);
        assert_eq!(outbox.push(Bytes::from_static(b"y\n"), 1, 2), Push::Gone);
    }

    #[tokio::test]
    async fn take_waits_for_a_push() {
        let (outbox, inbox) = outbox();
        let reader = tokio::spawn(async move { inbox.take().await });
        tokio::task::yield_now().await;
        outbox.push(Bytes::from_static(b"late\n"), 1, 10);
        assert_eq!(reader.await.unwrap().unwrap(), &b"late\n"[..]);
    }
}
