//! A member's outbox: what the hub has decided to send and the session has not written yet.
//!
//! Why not a tokio `mpsc` channel: a bounded channel allocates its first block of slots up front
//! (about a kilobyte) for every member, idle or not, and counts items, not lines. This queue
//! costs nothing until something is queued, gives all it holds to the session in one go (one
//! write per wake-up), and bounds what a member may have waiting in *lines*, however the hub
//! batches them.
//!
//! What the session takes is every queued chunk, written with one vectored write: a fan-out
//! chunk is shared by every member and is never copied into a per-member buffer.
//!
//! The session is woken through one [`AtomicWaker`] (a `Notify` took a lock on every push and
//! every wait, once per member for every message fanned out).
//!
//! The hub [`push`](Outbox::push)es without ever waiting: when a member's queue is full the push
//! says so and the hub disconnects that member. The hub can [`close`](Outbox::close) it with a
//! last word that goes past the queue; the session's side closes it when the connection ends, so
//! later pushes report [`Push::Gone`].

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use bytes::{Buf, Bytes};
use futures_util::task::AtomicWaker;

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
    /// The session's task, when it waits for the queue.
    wake: AtomicWaker,
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

/// Chunks taken from an outbox, to be written in order: a [`Buf`] whose
/// [`chunks_vectored`](Buf::chunks_vectored) lets one `writev` send them all.
#[derive(Debug, Default)]
pub struct Outgoing {
    chunks: VecDeque<Bytes>,
    remaining: usize,
    /// The last byte written was not a newline: a write given up now leaves half a line.
    is_mid_line: bool,
}

impl Outgoing {
    fn new(chunks: VecDeque<Bytes>) -> Self {
        let remaining = chunks.iter().map(Bytes::len).sum();
        Self {
            chunks,
            remaining,
            is_mid_line: false,
        }
    }

    /// Whether what was written so far ends in the middle of a line.
    pub fn is_mid_line(&self) -> bool {
        self.is_mid_line
    }

    /// The chunks not yet written, in order (each holds whole lines).
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.chunks.iter()
    }

    /// The chunks not yet written, in order, for a session that writes them its own way (a
    /// WebSocket frames each line).
    pub fn into_chunks(self) -> VecDeque<Bytes> {
        self.chunks
    }
}

impl From<Bytes> for Outgoing {
    fn from(chunk: Bytes) -> Self {
        Self::new(VecDeque::from([chunk]))
    }
}

impl Buf for Outgoing {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |chunk| chunk)
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slot, chunk) in dst.iter_mut().zip(self.chunks.iter()) {
            *slot = IoSlice::new(chunk);
            filled += 1;
        }
        filled
    }

    fn advance(&mut self, mut cnt: usize) {
        self.remaining = self.remaining.saturating_sub(cnt);
        while cnt > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if cnt < front.len() {
                self.is_mid_line = front[cnt - 1] != b'\n';
                front.advance(cnt);
                return;
            }
            if let Some(&last) = front.last() {
                self.is_mid_line = last != b'\n';
            }
            cnt -= front.len();
            self.chunks.pop_front();
        }
    }
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
        self.shared.wake.wake();
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
        self.shared.wake.wake();
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.close(None);
    }
}

impl Inbox {
    /// Waits for queued output and takes all of it, to be written together. `None` once the
    /// outbox is closed and everything (the last word included) has been taken.
    pub async fn take(&self) -> Option<Outgoing> {
        std::future::poll_fn(|cx| {
            // Registered before looking: a push after the look wakes this task.
            self.shared.wake.register(cx.waker());
            let mut queue = self.shared.lock();
            if !queue.chunks.is_empty() {
                queue.lines = 0;
                // Drained: an idle member keeps no queue memory.
                return Poll::Ready(Some(Outgoing::new(std::mem::take(&mut queue.chunks))));
            }
            if queue.is_closed {
                return Poll::Ready(queue.last_word.take().map(Outgoing::from));
            }
            Poll::Pending
        })
        .await
    }

    /// Adds to `out` whatever was queued since it was taken, without waiting.
    pub fn take_more(&self, out: &mut Outgoing) {
        let mut queue = self.shared.lock();
        if queue.chunks.is_empty() {
            return;
        }
        queue.lines = 0;
        let more = std::mem::take(&mut queue.chunks);
        drop(queue);
        out.remaining += more.iter().map(Bytes::len).sum::<usize>();
        out.chunks.extend(more);
    }

    /// Completes when the hub has cut the member off with a last word: a session blocked
    /// writing to a member that does not read uses this to stop waiting for it.
    pub async fn kicked(&self) {
        std::future::poll_fn(|cx| {
            self.shared.wake.register(cx.waker());
            let queue = self.shared.lock();
            if queue.is_closed && queue.last_word.is_some() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
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
        assert_eq!(written(inbox.take().await.unwrap()), b"a\nb\nc\n");
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
        assert_eq!(written(inbox.take().await.unwrap()), b"1\n2\n");
        assert_eq!(written(inbox.take().await.unwrap()), b"bye\n");
        assert!(inbox.take().await.is_none());
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
        assert_eq!(written(reader.await.unwrap().unwrap()), b"late\n");
    }

    /// What writing `out` puts on the wire, a partial write at a time as a socket may take it.
    fn written(mut out: Outgoing) -> Vec<u8> {
        let mut wire = Vec::new();
        while out.has_remaining() {
            let mut slices = [IoSlice::new(&[]); 4];
            let count = out.chunks_vectored(&mut slices);
            let all: Vec<u8> = slices[..count]
                .iter()
                .flat_map(|s| s.iter().copied())
                .collect();
            // Take at most 3 bytes per "write", so writes end inside chunks.
            let taken = all.len().min(3);
            wire.extend_from_slice(&all[..taken]);
            out.advance(taken);
            assert_eq!(out.remaining(), out.chunks().map(Bytes::len).sum::<usize>());
        }
        wire
    }

    #[tokio::test]
    async fn take_more_adds_what_came_since_in_order() {
        let (outbox, inbox) = outbox();
        outbox.push(Bytes::from_static(b"a\n"), 1, 10);
        let mut out = inbox.take().await.unwrap();
        inbox.take_more(&mut out);
        outbox.push(Bytes::from_static(b"b\n"), 1, 10);
        outbox.push(Bytes::from_static(b"c\n"), 1, 10);
        inbox.take_more(&mut out);
        assert_eq!(written(out), b"a\nb\nc\n");
        // Taken: the queue is empty and counts nothing against the limit.
        assert_eq!(
            outbox.push(Bytes::from_static(b"d\n"), 10, 10),
            Push::Queued(10)
        );
    }

    #[test]
    fn a_write_cut_short_knows_whether_it_ends_mid_line() {
        let mut out = Outgoing::new(VecDeque::from([
            Bytes::from_static(b"ab\ncd\n"),
            Bytes::from_static(b"ef\n"),
        ]));
        assert!(!out.is_mid_line(), "nothing written yet");
        out.advance(2);
        assert!(out.is_mid_line(), "after \"ab\"");
        out.advance(1);
        assert!(!out.is_mid_line(), "after \"ab\\n\"");
        out.advance(3);
        assert!(!out.is_mid_line(), "the first chunk whole");
        out.advance(1);
        assert!(out.is_mid_line(), "after \"e\"");
        out.advance(2);
        assert!(!out.is_mid_line() && !out.has_remaining());
    }

    #[tokio::test]
    async fn a_kicked_member_is_told_while_its_write_waits() {
        let (outbox, inbox) = outbox();
        let waiter = tokio::spawn(async move {
            inbox.kicked().await;
            inbox.last_word()
        });
        tokio::task::yield_now().await;
        outbox.close(Some(Bytes::from_static(b"bye\n")));
        assert_eq!(waiter.await.unwrap().unwrap(), &b"bye\n"[..]);
    }
}
