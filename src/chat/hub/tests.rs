//! The hub driven directly, without sockets: requests in, outboxes read.
//!
//! The hub runs its own loop ([`Hub::run`]) with the real history writer and reader (over an
//! in-memory store) and the real password checker. Their answers reach the hub on channels it already
//! takes as inputs, so the tests put a relay on each, with no seam in the hub: a committed
//! batch, a finished password check or a history read is handed on only when a test says so.
//! "A message still being committed", "a password still being checked" or "a history still
//! being read" is then a state a test holds for as
//! long as it likes, and the order rules can be seen from both sides of it.
//!
//! [`Harness::settle`] waits until the hub has handled everything given to it so far. Nothing
//! sleeps: every wait is for something the hub sends, bounded by [`PATIENCE`] only so that a
//! broken hub fails the test instead of hanging it.

use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::time::timeout;

use super::*;
use crate::chat::history::Sync;
use crate::chat::outbox::{Inbox, Outgoing, outbox};
use crate::limits::{ANNOUNCE_LIMIT, HISTORY_REPLAY, MAX_MAIL, MAX_ROOMS, OUTBOX};

/// The longest any one wait may take: a guard against a hang, never a way to let time pass.
const PATIENCE: Duration = Duration::from_secs(10);

/// What a member is told when a request of its is past [`MAX_HELD_REQUESTS`].
const DROPPED: &str = "! error: too many requests waiting for your earlier ones to take \
                       effect; this one was dropped (slow down)";

/// The hub's default settings.
fn config() -> HubConfig {
    HubConfig {
        history_replay: HISTORY_REPLAY,
        max_rooms: MAX_ROOMS,
        outbox: OUTBOX,
        announce_limit: ANNOUNCE_LIMIT,
        max_mail: MAX_MAIL,
        max_line: crate::limits::MAX_LINE,
    }
}

/// A member as its session sees it: its id and its end of the outbox.
struct Client {
    id: MemberId,
    inbox: Inbox,
}

impl Client {
    fn new(id: MemberId) -> (Client, Request) {
        let (outbox, inbox) = outbox();
        let connect = Request::Connect {
            id,
            outbox,
            format: Format::Text,
            encoding: WireEncoding::default(),
        };
        (Client { id, inbox }, connect)
    }

    /// The lines queued for this member since last asked, taken without waiting: call it after
    /// [`Harness::settle`], when everything the hub was given has been handled.
    fn heard(&self) -> Vec<String> {
        let mut heard = Vec::new();
        while let Some(Some(out)) = self.inbox.take().now_or_never() {
            heard.extend(lines(&out));
        }
        heard
    }

    /// Whether the hub has let this member go: its outbox is closed and nothing is left in it.
    fn is_closed(&self) -> bool {
        matches!(self.inbox.take().now_or_never(), Some(None))
    }
}

fn lines(out: &Outgoing) -> Vec<String> {
    let bytes: Vec<u8> = out
        .chunks()
        .flat_map(|chunk| chunk.iter().copied())
        .collect();
    let text = String::from_utf8(bytes).expect("utf-8 members are sent utf-8");
    text.lines().map(str::to_string).collect()
}

/// The messages in `batches`, as `<nick> text`: who the hub said they are from when it handed
/// them to the writer.
fn said(batches: &[Batch<Route>]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|batch| &batch.items)
        .map(|item| format!("<{}> {}", item.record.nick, item.record.text))
        .collect()
}

/// A running hub, with the writer's and the checker's answers held back until handed on.
struct Harness {
    requests: mpsc::Sender<Request>,
    /// Batches the writer committed, not yet given to the hub: their messages are in flight.
    written: mpsc::UnboundedReceiver<Batch<Route>>,
    /// Where the hub hears of committed batches.
    committed: mpsc::UnboundedSender<Batch<Route>>,
    /// Password checks the checker finished, not yet given to the hub.
    checks_done: mpsc::UnboundedReceiver<Checked>,
    /// Where the hub hears of finished checks.
    checked: mpsc::UnboundedSender<Checked>,
    /// History the reader read, not yet given to the hub.
    reads_done: mpsc::UnboundedReceiver<ReadDone>,
    /// Where the hub hears of finished reads.
    read: mpsc::UnboundedSender<ReadDone>,
    /// A member in no room, whose notices show how far the hub has got.
    probe: Client,
    marks: u64,
    next_id: MemberId,
}

impl Harness {
    async fn start() -> Harness {
        Harness::start_with(config(), &[]).await
    }

    /// A hub with `config`, whose store has an account for each `(nick, password)`.
    async fn start_with(config: HubConfig, accounts: &[(&str, &str)]) -> Harness {
        let store = Store::open(":memory:", Sync::Normal, 0).expect("an in-memory store");
        for (nick, password) in accounts {
            let password = Password::given(password).expect("a valid password");
            let hash = account::hash(&password).expect("hashing");
            let created = store.create_account(&account::key(nick), nick, &hash);
            assert!(created.expect("the store"), "{nick} registered twice");
        }
        let (written_tx, written) = mpsc::unbounded_channel();
        let writer = store.spawn_writer(written_tx).expect("the writer thread");
        let mut hub = Hub::new(config, store, writer).expect("a hub over a new store");
        // The checker answers the test, which hands its answers on to the hub.
        let checks_done = hub.checked.take().expect("the checker's answers");
        let (checked, checked_rx) = mpsc::unbounded_channel();
        hub.checked = Some(checked_rx);
        let reads_done = hub.read.take().expect("the reader's answers");
        let (read, read_rx) = mpsc::unbounded_channel();
        hub.read = Some(read_rx);
        let (committed, committed_rx) = mpsc::unbounded_channel();
        let (requests, requests_rx) = mpsc::channel(64);
        // Dropped with the test's runtime: the hub's task, then the writer, end with it.
        tokio::spawn(hub.run(requests_rx, committed_rx, CancellationToken::new()));

        let (probe, connect) = Client::new(0);
        let harness = Harness {
            requests,
            written,
            committed,
            checks_done,
            checked,
            reads_done,
            read,
            probe,
            marks: 0,
            next_id: 1,
        };
        harness.send(connect).await;
        // Out of every room, the probe hears nothing of the others.
        harness.command(&harness.probe, Command::Part(None)).await;
        harness
    }

    async fn send(&self, request: Request) {
        let sent = timeout(PATIENCE, self.requests.send(request)).await;
        sent.expect("the hub to take a request")
            .expect("the hub to be running");
    }

    async fn command(&self, member: &Client, command: Command) {
        self.send(Request::Command(member.id, command)).await;
    }

    /// `/login NICK PASSWORD` from `member`.
    async fn login(&self, member: &Client, nick: &str, password: &str) {
        let password = Password::given(password).expect("a valid password");
        let nick = nick.into();
        self.command(member, Command::Login { nick, password })
            .await;
    }

    async fn say(&self, member: &Client, text: &str) {
        let text = text.to_string();
        self.command(member, Command::Say { room: None, text })
            .await;
    }

    /// Members connected and named `nicks`, in `#lobby` together, with what they heard on the
    /// way in taken.
    async fn members<const N: usize>(&mut self, nicks: [&str; N]) -> [Client; N] {
        let mut members = Vec::new();
        for nick in nicks {
            let (member, connect) = Client::new(self.next_id);
            self.next_id += 1;
            self.send(connect).await;
            self.command(&member, Command::Nick(nick.into())).await;
            members.push(member);
        }
        self.settle().await;
        for member in &members {
            member.heard();
        }
        members
            .try_into()
            .unwrap_or_else(|_| unreachable!("N members"))
    }

    /// Waits until the hub has handled every request sent so far, and every batch and check
    /// result handed on. The hub is one task taking commits first, then check results, then
    /// requests, each in order: by the time the probe hears a notice sent after them all,
    /// everything before it has been handled, and all it queued is in the outboxes.
    async fn settle(&mut self) {
        self.marks += 1;
        let text = format!("mark {}", self.marks);
        let expected = format!("* {text}");
        self.send(Request::Notice(self.probe.id, Event::Info { text }))
            .await;
        loop {
            let out = timeout(PATIENCE, self.probe.inbox.take()).await;
            let out = out.expect("the hub to reach the mark").expect("the probe");
            if lines(&out).contains(&expected) {
                return;
            }
        }
    }

    /// Waits until the writer has committed `count` more messages, and keeps them from the hub:
    /// they stay in flight until [`Harness::deliver`].
    async fn written(&mut self, count: usize) -> Vec<Batch<Route>> {
        let mut batches = Vec::new();
        let mut items = 0;
        while items < count {
            let batch = timeout(PATIENCE, self.written.recv()).await;
            let batch = batch.expect("the writer to commit").expect("the writer");
            items += batch.items.len();
            batches.push(batch);
        }
        batches
    }

    /// Hands committed batches to the hub, as the writer does, and waits until it has handled
    /// them.
    async fn deliver(&mut self, batches: Vec<Batch<Route>>) {
        for batch in batches {
            self.committed.send(batch).expect("the hub to be running");
        }
        self.settle().await;
    }

    /// Waits until the checker has finished a password check, and keeps its result from the
    /// hub: the member's check is pending until [`Harness::answer`].
    async fn check_done(&mut self) -> Checked {
        let done = timeout(PATIENCE, self.checks_done.recv()).await;
        done.expect("the checker to answer").expect("the checker")
    }

    /// Hands a finished check to the hub and waits until it has handled it.
    async fn answer(&mut self, result: Checked) {
        self.checked.send(result).expect("the hub to be running");
        self.settle().await;
    }

    /// Waits until the reader has read a `/history`, and keeps it from the hub: the member's
    /// read is pending until [`Harness::hand_read`].
    async fn read_done(&mut self) -> ReadDone {
        let done = timeout(PATIENCE, self.reads_done.recv()).await;
        done.expect("the reader to answer").expect("the reader")
    }

    /// Hands a finished read to the hub and waits until it has handled it.
    async fn hand_read(&mut self, done: ReadDone) {
        self.read.send(done).expect("the hub to be running");
        self.settle().await;
    }

    /// Hands the hub the next `count` reads as the reader finishes them.
    async fn reads(&mut self, count: usize) {
        for _ in 0..count {
            let done = self.read_done().await;
            self.hand_read(done).await;
        }
    }
}

#[test]
fn a_members_requests_keep_their_order_and_only_messages_pass_messages_in_flight() {
    let say = || Command::Say {
        room: None,
        text: "hi".into(),
    };
    let message = Request::Command(7, say());
    let private = Request::Command(
        7,
        Command::Msg {
            to: "bob".into(),
            text: "psst".into(),
        },
    );
    let part = Request::Command(7, Command::Part(None));
    let leave = Request::Leave(7, None);
    let encoding = Request::SetEncoding(7, WireEncoding::default());
    for request in [&message, &private, &part, &leave, &encoding] {
        assert_eq!(request.member(), Some(7), "{request:?}");
    }
    assert!(message.is_message() && private.is_message());
    assert!(!part.is_message() && !leave.is_message() && !encoding.is_message());

    // What a session tells its own member, and where it comes from, is not held.
    let notice = Request::Notice(7, Event::Info { text: "x".into() });
    assert_eq!(notice.member(), None);
    assert_eq!(Request::Address(7, "127.0.0.1:1".into()).member(), None);
}

#[tokio::test]
async fn a_message_then_a_part_reach_everyone_in_that_order() {
    let mut hub = Harness::start().await;
    let [ann, bob] = hub.members(["ann", "bob"]).await;
    hub.say(&ann, "see you").await;
    hub.command(&ann, Command::Part(None)).await;
    let commit = hub.written(1).await;
    hub.settle().await;
    // The message is being committed, and the part waits for it.
    assert!(ann.heard().is_empty());
    assert!(bob.heard().is_empty());

    hub.deliver(commit).await;
    assert_eq!(
        ann.heard(),
        [
            "[#lobby] <ann> see you",
            "* ann left #lobby",
            "* you are in no room now; /join #room to talk",
        ]
    );
    assert_eq!(bob.heard(), ["[#lobby] <ann> see you", "* ann left #lobby"]);
}

#[tokio::test]
async fn messages_pass_messages_in_flight_but_not_a_request_held_before_them() {
    let mut hub = Harness::start().await;
    let [ann, bob] = hub.members(["ann", "bob"]).await;
    hub.say(&ann, "one").await;
    hub.say(&ann, "two").await;
    // Both are handed to the writer before either is delivered: messages keep their order
    // through the writer, and do not wait for each other.
    let first = hub.written(2).await;
    assert_eq!(said(&first), ["<ann> one", "<ann> two"]);

    hub.command(&ann, Command::Nick("anna".into())).await;
    hub.say(&ann, "three").await;
    hub.settle().await;
    assert!(bob.heard().is_empty());

    hub.deliver(first).await;
    assert_eq!(
        bob.heard(),
        [
            "[#lobby] <ann> one",
            "[#lobby] <ann> two",
            "* ann is now known as anna",
        ]
    );
    // "three" waited behind the nick change, so it is from anna.
    let second = hub.written(1).await;
    assert_eq!(said(&second), ["<anna> three"]);
    hub.deliver(second).await;
    assert_eq!(bob.heard(), ["[#lobby] <anna> three"]);
    assert_eq!(
        ann.heard(),
        [
            "[#lobby] <ann> one",
            "[#lobby] <ann> two",
            "* ann is now known as anna",
            "[#lobby] <anna> three",
        ]
    );
}

/// An error about a message (here a private one to nobody) while the sender's earlier message
/// is still being stored arrives after that message, not before; and what the sender does
/// next waits behind the error.
#[tokio::test]
async fn an_error_about_a_message_waits_behind_the_messages_in_flight() {
    let mut hub = Harness::start().await;
    let [ann, bob] = hub.members(["ann", "bob"]).await;
    hub.say(&ann, "first").await;
    let commit = hub.written(1).await;
    let to_nobody = Command::Msg {
        to: "nobody".into(),
        text: "hello?".into(),
    };
    hub.command(&ann, to_nobody).await;
    hub.say(&ann, "third").await;
    hub.settle().await;
    assert!(
        ann.heard().is_empty(),
        "the error came before the first message"
    );

    hub.deliver(commit).await;
    let third = hub.written(1).await;
    assert_eq!(said(&third), ["<ann> third"]);
    hub.deliver(third).await;
    let heard = ann.heard();
    assert_eq!(heard.len(), 3, "{heard:?}");
    assert_eq!(heard[0], "[#lobby] <ann> first");
    assert!(
        heard[1].starts_with("! error: no one called 'nobody'"),
        "{heard:?}"
    );
    assert_eq!(heard[2], "[#lobby] <ann> third");
    assert_eq!(
        bob.heard(),
        ["[#lobby] <ann> first", "[#lobby] <ann> third"]
    );
}

#[tokio::test]
async fn what_follows_a_login_waits_for_the_check_and_goes_out_under_the_nick_logged_in() {
    let mut hub = Harness::start_with(config(), &[("Ann", "correct-horse")]).await;
    let [visitor, bob] = hub.members(["visitor", "bob"]).await;
    hub.login(&visitor, "ann", "correct-horse").await;
    hub.say(&visitor, "it's me").await;
    hub.command(&visitor, Command::Who(None)).await;
    let check = hub.check_done().await;
    hub.settle().await;
    // The check is done, but the hub has not heard: everything after the login waits.
    assert!(visitor.heard().is_empty());
    assert!(bob.heard().is_empty());

    hub.answer(check).await;
    assert_eq!(
        visitor.heard(),
        [
            "* visitor is now known as Ann",
            "* you are logged in as Ann"
        ]
    );
    assert_eq!(bob.heard(), ["* visitor is now known as Ann"]);
    // Only now is the message handed to the writer, from the nick logged in to; the /who
    // after it waits for its delivery in turn.
    let commit = hub.written(1).await;
    assert_eq!(said(&commit), ["<Ann> it's me"]);
    hub.deliver(commit).await;
    assert_eq!(
        visitor.heard(),
        ["[#lobby] <Ann> it's me", "* #lobby (2): Ann, bob"]
    );
    assert_eq!(bob.heard(), ["[#lobby] <Ann> it's me"]);
}

#[tokio::test]
async fn what_follows_a_failed_login_still_runs_after_the_answer() {
    let mut hub = Harness::start_with(config(), &[("ann", "correct-horse")]).await;
    let [visitor, bob] = hub.members(["visitor", "bob"]).await;
    hub.login(&visitor, "ann", "wrong-horse").await;
    hub.say(&visitor, "was it me?").await;
    let check = hub.check_done().await;
    hub.settle().await;
    assert!(visitor.heard().is_empty());

    hub.answer(check).await;
    assert_eq!(visitor.heard(), ["! error: wrong password for 'ann'"]);
    let commit = hub.written(1).await;
    assert_eq!(said(&commit), ["<visitor> was it me?"]);
    hub.deliver(commit).await;
    assert_eq!(visitor.heard(), ["[#lobby] <visitor> was it me?"]);
    assert_eq!(bob.heard(), ["[#lobby] <visitor> was it me?"]);
}

#[tokio::test]
async fn a_failed_commit_is_reported_before_what_followed_it() {
    let mut hub = Harness::start().await;
    let [ann, bob] = hub.members(["ann", "bob"]).await;
    hub.say(&ann, "lost").await;
    hub.command(&ann, Command::Part(None)).await;
    let mut commit = hub.written(1).await;
    // The writer's answer when the database is full (the relay plays a failing disk).
    commit[0].error = Some("database or disk is full".into());

    hub.deliver(commit).await;
    assert_eq!(
        ann.heard(),
        [
            "! error: not sent: the server could not save it (database or disk is full)",
            "* ann left #lobby",
            "* you are in no room now; /join #room to talk",
        ]
    );
    // Nobody else hears a message that is not in the history.
    assert_eq!(bob.heard(), ["* ann left #lobby"]);
}

/// Ann's message stays in flight while she sends [`MAX_HELD_REQUESTS`] nick changes, which
/// all wait, and one more, which is dropped; then `leaving(ann)`, which must still be
/// honoured. Returns what ann and bob hear once the message is delivered.
async fn flood_past_the_cap_then(
    leaving: impl FnOnce(MemberId) -> Request,
) -> (Vec<String>, Vec<String>) {
    let mut hub = Harness::start().await;
    let [ann, bob] = hub.members(["ann", "bob"]).await;
    hub.say(&ann, "flood").await;
    let commit = hub.written(1).await;
    for i in 0..MAX_HELD_REQUESTS {
        hub.command(&ann, Command::Nick(format!("ann{i}"))).await;
    }
    hub.command(&ann, Command::Nick("dropped".into())).await;
    hub.send(leaving(ann.id)).await;
    // Another member is not held up by ann's queue, and ann has not left.
    hub.command(&bob, Command::Who(None)).await;
    hub.settle().await;
    assert_eq!(ann.heard(), [DROPPED]);
    assert_eq!(bob.heard(), ["* #lobby (2): ann, bob"]);

    hub.deliver(commit).await;
    let ann_heard = ann.heard();
    assert!(ann.is_closed(), "ann has left");
    // Bob carries on.
    hub.command(&bob, Command::Who(None)).await;
    hub.settle().await;
    let mut bob_heard = bob.heard();
    assert_eq!(bob_heard.pop().as_deref(), Some("* #lobby (1): bob"));
    (ann_heard, bob_heard)
}

/// What the room hears of ann's message and her [`MAX_HELD_REQUESTS`] nick changes, in order.
fn flood_delivered() -> Vec<String> {
    let mut lines = vec!["[#lobby] <ann> flood".to_string()];
    let mut old = "ann".to_string();
    for i in 0..MAX_HELD_REQUESTS {
        let new = format!("ann{i}");
        lines.push(format!("* {old} is now known as {new}"));
        old = new;
    }
    lines
}

#[tokio::test]
async fn past_the_held_requests_cap_a_request_is_dropped_but_a_leave_is_not() {
    let leave = |ann| Request::Leave(ann, Some("connection lost".into()));
    let (ann_heard, bob_heard) = flood_past_the_cap_then(leave).await;
    assert_eq!(ann_heard, flood_delivered());
    let last = MAX_HELD_REQUESTS - 1;
    let mut expected = flood_delivered();
    expected.push(format!("* ann{last} quit (connection lost)"));
    assert_eq!(bob_heard, expected);
}

#[tokio::test]
async fn past_the_held_requests_cap_a_quit_is_not_dropped() {
    let quit = |ann| Request::Command(ann, Command::Quit(Some("enough".into())));
    let (ann_heard, bob_heard) = flood_past_the_cap_then(quit).await;
    let mut expected = flood_delivered();
    expected.push("* bye".into());
    assert_eq!(ann_heard, expected);
    let last = MAX_HELD_REQUESTS - 1;
    let mut expected = flood_delivered();
    expected.push(format!("* ann{last} quit (enough)"));
    assert_eq!(bob_heard, expected);
}

#[tokio::test]
async fn a_member_that_leaves_with_requests_held_hears_nothing_after_and_the_room_goes_on() {
    let mut hub = Harness::start().await;
    let [ann, bob, cat] = hub.members(["ann", "bob", "cat"]).await;
    hub.say(&ann, "last words").await;
    let ann_commit = hub.written(1).await;
    hub.command(&ann, Command::Join("#dev".into())).await;
    hub.send(Request::Leave(ann.id, None)).await;
    // Meanwhile bob writes to the room, and to ann, who is still here.
    hub.say(&bob, "wait").await;
    let psst = Command::Msg {
        to: "ann".into(),
        text: "psst".into(),
    };
    hub.command(&bob, psst).await;
    let bob_commit = hub.written(2).await;
    hub.settle().await;
    assert!(ann.heard().is_empty());
    assert!(bob.heard().is_empty());

    // Ann's message is delivered; then what she did after it takes effect, leaving included.
    hub.deliver(ann_commit).await;
    assert_eq!(
        ann.heard(),
        ["[#lobby] <ann> last words", "* ann joined #dev"]
    );
    assert!(ann.is_closed());
    for member in [&bob, &cat] {
        assert_eq!(member.heard(), ["[#lobby] <ann> last words", "* ann quit"]);
    }

    // Bob's messages, committed while ann was here, reach everyone but her. (Bob's copy of
    // the private one confirms it is stored, as every sender's copy does; he is told it
    // reached no one.)
    hub.deliver(bob_commit).await;
    assert!(ann.heard().is_empty());
    assert_eq!(
        bob.heard(),
        [
            "[#lobby] <bob> wait",
            "[pm to ann] <bob> psst",
            "! error: ann left before your message reached them"
        ]
    );
    assert_eq!(cat.heard(), ["[#lobby] <bob> wait"]);

    hub.command(&bob, Command::Who(None)).await;
    let again = Command::Msg {
        to: "ann".into(),
        text: "hello?".into(),
    };
    hub.command(&bob, again).await;
    hub.say(&cat, "she's gone").await;
    let commit = hub.written(1).await;
    hub.deliver(commit).await;
    assert_eq!(
        bob.heard(),
        [
            "* #lobby (2): bob, cat",
            "! error: no one called 'ann' is here (see /who)",
            "[#lobby] <cat> she's gone",
        ]
    );
    assert_eq!(cat.heard(), ["[#lobby] <cat> she's gone"]);
    assert!(ann.is_closed());
}

/// The hub finds a member's outbox full (or gone) while delivering its message, and cuts it
/// off; the requests it had held behind that message go with it. (They once ran before the
/// member was removed: its held `/nick` was announced, and its held message reached the room
/// after the room heard it quit.)
#[tokio::test]
async fn a_member_cut_off_with_requests_held_is_not_heard_after_its_quit() {
    // An outbox this small fills fast; a quarter of it (2) may be in flight.
    let outbox_lines = 8;
    let config = HubConfig {
        outbox: outbox_lines,
        ..config()
    };
    let mut hub = Harness::start_with(config, &[]).await;
    let [ann, bob] = hub.members(["ann", "bob"]).await;
    hub.say(&ann, "hi").await;
    let commit = hub.written(1).await;
    hub.command(&ann, Command::Nick("anna".into())).await;
    hub.say(&ann, "are you there?").await;
    // Ann stops reading, and her outbox fills: 7 lines, the 5th of which (past half full)
    // brings a warning, make the 8 it may hold, so that her copy of "hi" will not fit.
    for i in 1..outbox_lines {
        let text = format!("filler {i}");
        hub.send(Request::Notice(ann.id, Event::Info { text }))
            .await;
    }
    hub.command(&bob, Command::Who(None)).await;
    hub.settle().await;
    assert_eq!(bob.heard(), ["* #lobby (2): ann, bob"], "ann is still here");

    // Delivering "hi" finds her outbox full: she is disconnected, and the room must not hear
    // from her after it hears she quit.
    hub.deliver(commit).await;
    let mut heard = bob.heard();
    hub.say(&bob, "anyone?").await;
    let after = hub.written(1).await;
    let handed_on = said(&after);
    hub.deliver(after).await;
    heard.extend(bob.heard());
    let cut_off =
        format!("* ann quit (disconnected for not reading: {outbox_lines} lines were waiting)");
    assert_eq!(
        heard,
        ["[#lobby] <ann> hi", &cut_off, "[#lobby] <bob> anyone?"]
    );
    assert_eq!(handed_on, ["<bob> anyone?"]);
}

/// A history reply counts as the lines it holds: a member asking for long histories again and
/// again without reading is cut off once its outbox holds `--outbox` lines of them, not after
/// `--outbox` replies.
#[tokio::test]
async fn history_replies_count_against_the_outbox_as_their_lines() {
    // A quarter of the outbox (10) may be in flight at once.
    let config = HubConfig {
        outbox: 40,
        ..config()
    };
    let mut hub = Harness::start_with(config, &[]).await;
    let [ann, bob] = hub.members(["ann", "bob"]).await;
    for round in 0..3 {
        for i in 0..10 {
            hub.say(&ann, &format!("message {round}.{i}")).await;
        }
        let commit = hub.written(10).await;
        hub.deliver(commit).await;
    }
    bob.heard();
    ann.heard();
    // Bob stops reading. Two replies of 16 lines fit; a third would make 48 wait.
    let history = || Command::History {
        room: None,
        limit: Some(15),
        before: None,
    };
    for _ in 0..3 {
        hub.command(&bob, history()).await;
    }
    // Read off the hub, one after the other: each waits for the one before.
    hub.reads(3).await;
    hub.command(&ann, Command::Who(None)).await;
    hub.settle().await;
    assert_eq!(
        ann.heard(),
        [
            "* bob quit (disconnected for not reading: 40 lines were waiting)",
            "* #lobby (1): ann"
        ]
    );
}

/// A private message whose recipient leaves while it is being stored is not confirmed as if it
/// had reached them: to a registered nick it is kept as mail, to another the sender is told.
#[tokio::test]
async fn a_private_message_to_someone_who_left_meanwhile_is_kept_or_reported() {
    let mut hub = Harness::start_with(config(), &[("bob", "correct-horse")]).await;
    let [ann, bob, cat] = hub.members(["ann", "visitor", "cat"]).await;
    hub.login(&bob, "bob", "correct-horse").await;
    let check = hub.check_done().await;
    hub.answer(check).await;
    for member in [&ann, &bob, &cat] {
        member.heard();
    }

    for to in ["bob", "cat"] {
        let text = format!("psst, {to}");
        let to = to.into();
        hub.command(&ann, Command::Msg { to, text }).await;
    }
    let commit = hub.written(2).await;
    hub.send(Request::Leave(bob.id, None)).await;
    hub.send(Request::Leave(cat.id, None)).await;
    hub.settle().await;
    ann.heard();
    hub.deliver(commit).await;
    assert_eq!(
        ann.heard(),
        [
            "[pm to bob] <ann> psst, bob",
            "* bob is offline; your message is kept and delivered when they log in",
            "[pm to cat] <ann> psst, cat",
            "! error: cat left before your message reached them",
        ]
    );

    // Bob's next login brings it.
    let [again] = hub.members(["again"]).await;
    hub.login(&again, "bob", "correct-horse").await;
    let check = hub.check_done().await;
    hub.answer(check).await;
    let heard = again.heard();
    assert_eq!(
        heard[heard.len() - 2..][0],
        "* 1 message kept for you while you were away:"
    );
    assert!(
        heard.last().unwrap().ends_with("<ann> psst, bob"),
        "{heard:?}"
    );
}

/// A `/history` read off the hub holds back what its member asks for next, message or command,
/// until its reply is queued; the others are served meanwhile.
#[tokio::test]
async fn what_follows_a_history_read_waits_for_its_reply() {
    let mut hub = Harness::start().await;
    let [ann, bob] = hub.members(["ann", "bob"]).await;
    hub.say(&ann, "one").await;
    hub.say(&ann, "two").await;
    let commit = hub.written(2).await;
    hub.deliver(commit).await;
    ann.heard();
    bob.heard();
    let older = Command::History {
        room: None,
        limit: Some(1),
        before: None,
    };
    hub.command(&ann, older).await;
    hub.say(&ann, "three").await;
    hub.send(Request::Refused(ann.id, "that line was too long".into()))
        .await;
    hub.command(&ann, Command::Who(None)).await;
    hub.command(&bob, Command::Who(None)).await;
    hub.settle().await;
    // Bob is not held up by ann's read.
    assert_eq!(bob.heard(), ["* #lobby (2): ann, bob"]);
    assert_eq!(
        ann.heard(),
        Vec::<String>::new(),
        "nothing before the reply"
    );
    let done = hub.read_done().await;
    hub.hand_read(done).await;
    let heard = ann.heard();
    assert_eq!(heard.len(), 2, "{heard:?}");
    assert_eq!(heard[0], "* 1 earlier message in #lobby:");
    assert!(heard[1].ends_with("] <ann> two"), "{heard:?}");
    // Then the message, and what came after it once it is delivered.
    let commit = hub.written(1).await;
    assert_eq!(said(&commit), ["<ann> three"]);
    hub.deliver(commit).await;
    assert_eq!(
        ann.heard(),
        [
            "[#lobby] <ann> three",
            "! error: that line was too long",
            "* #lobby (2): ann, bob"
        ]
    );
}

/// `/who` is kept per room, and a join, a nick change or a leave makes it anew.
#[tokio::test]
async fn who_is_answered_anew_after_joins_nick_changes_and_leaves() {
    let mut hub = Harness::start().await;
    let [ann, bob] = hub.members(["ann", "bob"]).await;
    let who = async |hub: &mut Harness| {
        hub.command(&ann, Command::Who(None)).await;
        hub.settle().await;
        ann.heard()
            .into_iter()
            .filter(|l| l.starts_with("* #lobby ("))
            .collect::<Vec<_>>()
    };
    assert_eq!(who(&mut hub).await, ["* #lobby (2): ann, bob"]);
    assert_eq!(who(&mut hub).await, ["* #lobby (2): ann, bob"]);
    let [cat] = hub.members(["cat"]).await;
    assert_eq!(who(&mut hub).await, ["* #lobby (3): ann, bob, cat"]);
    hub.command(&bob, Command::Nick("Ava".into())).await;
    assert_eq!(who(&mut hub).await, ["* #lobby (3): ann, Ava, cat"]);
    hub.command(&cat, Command::Part(None)).await;
    assert_eq!(who(&mut hub).await, ["* #lobby (2): ann, Ava"]);
    hub.send(Request::Leave(bob.id, None)).await;
    assert_eq!(who(&mut hub).await, ["* #lobby (1): ann"]);
}

/// A `/who` reply weighs in the outbox as its bytes in lines of `--max-line`, with a tiny
/// `--max-line` counted as `MIN_REPLY_LINE`: a member asking for a big room's list again and
/// again without reading is cut off after a few, not after `--outbox` of them.
#[tokio::test]
async fn who_replies_count_against_the_outbox_as_their_bytes() {
    let config = HubConfig {
        outbox: 40,
        max_line: 16,
        // Bob hears none of the crowd arriving.
        announce_limit: 0,
        ..config()
    };
    let mut hub = Harness::start_with(config, &[]).await;
    let [bob] = hub.members(["bob"]).await;
    // 300 nicks of 24 characters: a reply of about 7.6 KiB, 7 lines of MIN_REPLY_LINE.
    let mut crowd = Vec::new();
    for n in 0..300 {
        let (member, connect) = Client::new(1000 + n);
        hub.send(connect).await;
        let nick = format!("member{n:0>18}");
        hub.command(&member, Command::Nick(nick)).await;
        crowd.push(member);
    }
    hub.settle().await;
    bob.heard();
    // Bob stops reading: 7, 14, 21 lines (and a warning), 29, 36; the sixth would make 43.
    for _ in 0..8 {
        hub.command(&bob, Command::Who(None)).await;
    }
    hub.settle().await;
    let heard = bob.heard();
    let replies = heard
        .iter()
        .filter(|l| l.starts_with("* #lobby (301): "))
        .count();
    assert_eq!(replies, 5, "{heard:?}");
    assert_eq!(
        heard.last().map(String::as_str),
        Some("! error: disconnected for not reading: 40 lines were waiting")
    );
    assert!(bob.is_closed());
    drop(crowd);
}

#[test]
fn a_reply_weighs_its_lines_or_its_bytes_in_lines_at_most_half_the_outbox() {
    let config = HubConfig {
        outbox: 4096,
        max_line: 8192,
        ..config()
    };
    assert_eq!(reply_weight(&config, 1, 100), 1);
    assert_eq!(reply_weight(&config, 21, 2000), 21);
    assert_eq!(reply_weight(&config, 1, 10 * 8192), 10);
    assert_eq!(reply_weight(&config, 1, 1 << 30), 2048);
    let tiny = HubConfig {
        max_line: 10,
        ..config.clone()
    };
    assert_eq!(reply_weight(&tiny, 1, 10 * MIN_REPLY_LINE), 10);
    let one = HubConfig {
        outbox: 1,
        ..config
    };
    assert_eq!(reply_weight(&one, 5, 1 << 20), 1);
}

#[test]
fn looks_keep_every_holder_of_a_look_until_each_leaves() {
    let mut looks = Looks::default();
    let holders = |looks: &Looks, look: &str| {
        let mut all: Vec<MemberId> = looks.holders(look).collect();
        all.sort_unstable();
        all
    };
    looks.add("ann", 1);
    looks.add("ann", 2);
    looks.add("ann", 3);
    looks.add("bob", 4);
    assert_eq!(holders(&looks, "ann"), [1, 2, 3]);
    // The first holder leaving hands its place to another.
    looks.remove("ann", 1);
    assert_eq!(holders(&looks, "ann"), [2, 3]);
    looks.remove("ann", 3);
    assert_eq!(holders(&looks, "ann"), [2]);
    // Removing one that does not hold the look changes nothing.
    looks.remove("ann", 4);
    assert_eq!(holders(&looks, "ann"), [2]);
    looks.remove("ann", 2);
    assert!(holders(&looks, "ann").is_empty());
    assert_eq!(holders(&looks, "bob"), [4]);
    looks.remove("bob", 4);
    assert!(looks.first.is_empty() && looks.more.is_empty());
}

/// `/rooms` is made once and shared by everyone who asks, until the list changes: a room
/// appearing or going, or a member joining or leaving one (the counts are shown). A nick
/// change leaves it as it is.
#[tokio::test]
async fn rooms_is_kept_and_shared_until_the_list_changes() {
    let mut hub = Harness::start().await;
    let [ann, bob] = hub.members(["ann", "bob"]).await;
    // Each member's replies to /rooms, as sent: the lines and where their bytes are.
    let rooms = async |hub: &mut Harness, member: &Client| {
        hub.command(member, Command::Rooms).await;
        hub.settle().await;
        let mut replies = Vec::new();
        while let Some(Some(out)) = member.inbox.take().now_or_never() {
            for chunk in out.chunks() {
                let text = String::from_utf8(chunk.to_vec()).expect("utf-8");
                if text.starts_with("* rooms: ") {
                    replies.push((text.trim_end().to_string(), chunk.as_ptr()));
                }
            }
        }
        assert_eq!(replies.len(), 1, "{replies:?}");
        replies.remove(0)
    };
    let (first, at) = rooms(&mut hub, &ann).await;
    assert_eq!(first, "* rooms: #lobby (2)");
    // Asked again, by ann or by bob: the same bytes, not made anew.
    assert_eq!(rooms(&mut hub, &ann).await, (first.clone(), at));
    assert_eq!(rooms(&mut hub, &bob).await, (first, at));
    // A nick change is not in the list.
    hub.command(&bob, Command::Nick("Ava".into())).await;
    assert_eq!(rooms(&mut hub, &ann).await.1, at);
    // A room appears; a member joins one; leaves one; a room goes; a member leaves.
    hub.command(&bob, Command::Join("#dev".into())).await;
    assert_eq!(
        rooms(&mut hub, &ann).await.0,
        "* rooms: #dev (1), #lobby (2)"
    );
    hub.command(&ann, Command::Join("#dev".into())).await;
    assert_eq!(
        rooms(&mut hub, &bob).await.0,
        "* rooms: #dev (2), #lobby (2)"
    );
    hub.command(&ann, Command::Part(Some("#lobby".into())))
        .await;
    assert_eq!(
        rooms(&mut hub, &bob).await.0,
        "* rooms: #dev (2), #lobby (1)"
    );
    hub.command(&bob, Command::Part(Some("#lobby".into())))
        .await;
    assert_eq!(rooms(&mut hub, &bob).await.0, "* rooms: #dev (2)");
    hub.send(Request::Leave(ann.id, None)).await;
    assert_eq!(rooms(&mut hub, &bob).await.0, "* rooms: #dev (1)");
}

/// What a `/rooms` costs the hub with 1,000 rooms: `cargo test --release --lib -- --ignored
/// rooms_cost --nocapture`. The process's CPU time for 20,000 `/rooms` requests, less that of
/// as many `/help` requests (a reply of one line made anew each time), so that what the
/// channel, the settling and the reading cost is left out.
#[tokio::test]
#[ignore = "a measurement; run it in a release build"]
async fn rooms_cost() {
    const ROOMS: usize = 1_000;
    const ASKED: usize = 20_000;
    let mut hub = Harness::start().await;
    let [asker] = hub.members(["asker"]).await;
    // 50 members in 20 rooms each (--max-rooms), #lobby left.
    let mut crowd = Vec::new();
    for n in 0..ROOMS / MAX_ROOMS {
        let (member, connect) = Client::new(1000 + n as MemberId);
        hub.send(connect).await;
        hub.command(&member, Command::Part(None)).await;
        for r in 0..MAX_ROOMS {
            let room = format!("#room-{n:03}-{r:02}-a-longer-name");
            hub.command(&member, Command::Join(room)).await;
        }
        crowd.push(member);
    }
    hub.settle().await;
    for member in &crowd {
        member.heard();
    }
    let cpu = || {
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage writes the struct it is given.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        let micros = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
        micros(usage.ru_utime) + micros(usage.ru_stime)
    };
    let mut bytes = 0;
    let mut run = async |hub: &mut Harness, command: fn() -> Command| {
        let start = cpu();
        for round in 0..ASKED / 50 {
            for _ in 0..50 {
                hub.command(&asker, command()).await;
            }
            hub.settle().await;
            // Taken without reading it: what the test does with it is not the hub's cost.
            let mut taken = 0;
            while let Some(Some(out)) = asker.inbox.take().now_or_never() {
                taken += out.chunks().map(Bytes::len).sum::<usize>();
            }
            if round == 0 {
                bytes = taken / 50;
            }
        }
        (cpu() - start) / ASKED as f64
    };
    let help = run(&mut hub, || Command::Help).await;
    let rooms = run(&mut hub, || Command::Rooms).await;
    println!(
        "/rooms with {ROOMS} rooms ({bytes} bytes): {rooms:.1} µs CPU per request; \
         /help {help:.1} µs; /rooms costs {:.1} µs more",
        rooms - help
    );
    drop(crowd);
}

/// `/who` lists nicks in the order of their keys (full case folding), as identity goes, not of
/// `to_lowercase`: that keeps `ß` (after `s`) and a final `ς` (before `σ`) apart from the
/// letters they fold to.
#[tokio::test]
async fn who_sorts_nicks_by_their_key() {
    let mut hub = Harness::start().await;
    // Straße is strasse: before strassea. ΟΔΟΣ_Α is οδοσ_α: after οδοσ1 ('_' after '1').
    let [ann, ..] = hub
        .members(["ann", "Strassea", "Straße", "οδοσ1", "ΟΔΟΣ_Α", "Bob"])
        .await;
    hub.command(&ann, Command::Who(None)).await;
    hub.settle().await;
    let heard = ann.heard();
    let who: Vec<&String> = heard
        .iter()
        .filter(|l| l.starts_with("* #lobby ("))
        .collect();
    assert_eq!(
        who,
        ["* #lobby (6): ann, Bob, Straße, Strassea, οδοσ1, ΟΔΟΣ_Α"],
        "{heard:?}"
    );
}

/// `/register` refuses a nick that looks like a registered one, with `/nick`'s words. The
/// look-alike is held here because the registered nick was not registered yet when it was
/// taken: its owner's connection ended while the registration was being checked.
#[tokio::test]
async fn register_refuses_a_look_alike_of_a_nick_registered_since_it_was_taken() {
    let mut hub = Harness::start().await;
    let [bob, eve, cat] = hub.members(["bob", "eve", "cat"]).await;
    let password = || Password::chosen("correct-horse").expect("a valid password");
    hub.command(&bob, Command::Register(password())).await;
    let check = hub.check_done().await;
    // Bob's session ends: the next line for it finds it gone, and the hub lets bob go.
    drop(bob.inbox);
    hub.say(&cat, "hello").await;
    let commit = hub.written(1).await;
    hub.deliver(commit).await;
    assert!(
        cat.heard()
            .contains(&"* bob quit (connection closed)".to_string())
    );
    // Nobody holds bob, and it is not registered yet: eve may take a look-alike.
    hub.command(&eve, Command::Nick("b0b".into())).await;
    hub.settle().await;
    assert!(
        eve.heard()
            .contains(&"* eve is now known as b0b".to_string())
    );
    hub.answer(check).await;
    hub.command(&eve, Command::Register(password())).await;
    hub.settle().await;
    assert_eq!(
        eve.heard(),
        ["! error: nick 'b0b' looks like 'bob', which is registered"]
    );
}

/// `/register` refuses a nick that looks like one being registered (its hash not done yet):
/// were both let through, two registered nicks would look alike once both hashes were done.
#[tokio::test]
async fn register_refuses_a_look_alike_of_a_nick_being_registered() {
    let mut hub = Harness::start().await;
    let [bob, eve, cat] = hub.members(["bob", "eve", "cat"]).await;
    let password = || Password::chosen("correct-horse").expect("a valid password");
    hub.command(&bob, Command::Register(password())).await;
    let check = hub.check_done().await;
    // Bob's session ends while his registration is checked: nobody holds bob.
    drop(bob.inbox);
    hub.say(&cat, "hello").await;
    let commit = hub.written(1).await;
    hub.deliver(commit).await;
    hub.command(&eve, Command::Nick("b0b".into())).await;
    hub.settle().await;
    assert!(
        eve.heard()
            .contains(&"* eve is now known as b0b".to_string())
    );
    // bob's hash is not done: eve's /register must not start one of its own.
    hub.command(&eve, Command::Register(password())).await;
    hub.settle().await;
    assert_eq!(
        eve.heard(),
        ["! error: nick 'b0b' looks like 'bob', which is being registered"]
    );
    hub.answer(check).await;
    // And once bob's is done, as before: registered.
    hub.command(&eve, Command::Register(password())).await;
    hub.settle().await;
    assert_eq!(
        eve.heard(),
        ["! error: nick 'b0b' looks like 'bob', which is registered"]
    );
}
