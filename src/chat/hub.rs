//! The hub: one task that owns every room, member and nick.
//!
//! Sessions talk to the hub through a channel of [`Request`]s and hear back through their own
//! bounded outbox of ready-to-write bytes, so there are no shared locks on the hot path and the
//! order of events is the order the hub decided them.
//!
//! # A message's way
//! 1. A session sends `Command::Say`; the hub checks it and gives it to the history
//!    [`Writer`](super::history::Writer).
//! 2. The writer commits a batch and hands it back ([`Batch`]).
//! 3. Only then does the hub fan it out: each distinct (format, encoding) rendering is made once
//!    and shared (`Bytes`) by every member who needs it.
//!
//! At most a quarter of an outbox of messages is in flight (handed to the writer, not yet
//! delivered) at a time; while that many are, the hub takes no new requests, so sessions stop
//! reading and TCP pushes back on fast senders. A committed batch is therefore never more than a
//! member who keeps reading can take, however long a commit took.
//!
//! # Replies and reads
//! A reply to one member (`/who`, `/rooms`, `/history`) weighs in its outbox as the lines it
//! is, or as its bytes in lines of `--max-line` if that is more (see [`MIN_REPLY_LINE`]), at
//! most half the outbox: asked for again and again by a member that does not read, big replies
//! fill its outbox (and it is cut off) long before the server holds much for it. A room keeps
//! its `/who` reply, rendered, until someone joins, leaves or changes nick; the hub keeps the
//! `/rooms` reply (every room, with its count: tens of kilobytes with a thousand rooms) until a
//! room appears or goes or someone joins or leaves one. Either is made once per (format,
//! encoding) and shared by everyone who asks, so asking again and again costs next to nothing.
//!
//! A room's replay on joining is read and rendered on the hub, once until the room's next
//! message (see `Replay`). Other `/history` reads go to the history [`Reader`] thread, and
//! the member's later requests wait for the reply, as they wait for a password check.
//!
//! # Slow members
//! Outboxes are bounded and filled with `try_send`, so the hub never waits for anyone. A member
//! whose outbox passes half full is warned once; one whose outbox is full is disconnected with
//! a reason, and the room carries on.
//!
//! # Nicks
//! A nick is one with every nick of the same [`account::key`] (Unicode case folding, in normal
//! form C); `nicks` holds members by that key. `/nick` also refuses a nick with the
//! [`account::look`] (confusable skeleton) of a nick another member holds or of a registered
//! one, and one that mixes scripts ([`account::mixed_scripts`]). Keys are computed when a nick
//! is taken, looked up or mailed to, or the member leaves; delivering a message folds
//! nothing.
//!
//! # Accounts
//! A registered nick is held only by a member logged in as it: `/nick` to it is refused, guest
//! nicks skip it, and a login from another connection takes it over (the old holder becomes a
//! guest). Passwords are checked off the hub by the [`Checker`]; the hub applies each result
//! against its state of that moment. A private message to a registered nick that nobody holds
//! is stored with a mailbox mark (in the same commit) and delivered at that nick's next login.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::account::{self, Checked, Checker, FailureLimit, Job, JobKind, Outcome, Password};
use super::command::{Command, HELP};
use super::event::{Event, Kind, Record, RoomInfo, now_ms};
use super::history::{Batch, Pending, Reader, Store, StoreError, Writer};
use super::outbox::{Outbox, Push};
use crate::codec::WireEncoding;
use crate::limits::{
    LOGIN_FAILURES_PER_NICK, LOGIN_FAILURES_PER_NICK_TOTAL, LOGIN_FAILURES_PER_SOURCE,
    LOGIN_WINDOW, MAX_HELD_REQUESTS, MAX_HISTORY, MIN_REPLY_LINE,
};

/// The answer when too many password checks are queued.
const BUSY: &str = "the server is busy checking passwords; try again in a moment";

/// Identifies a connection for its whole life (nicks change; ids don't).
pub type MemberId = u64;

/// The room everyone starts in.
pub const LOBBY: &str = "#lobby";

/// How a member reads: readable lines or JSON lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `[#dev] <ann> hello`, for people.
    Text,
    /// One JSON object per line, for programs.
    Json,
}

/// What sessions ask of the hub.
#[derive(Debug)]
pub enum Request {
    /// A new connection.
    Connect {
        /// Its id.
        id: MemberId,
        /// Where the hub writes to it.
        outbox: Outbox,
        /// How it reads: lines for people, JSON for programs and browsers.
        format: Format,
        /// Its text encoding.
        encoding: WireEncoding,
    },
    /// A parsed command.
    Command(MemberId, Command),
    /// The session switched its text encoding (after checking the label).
    SetEncoding(MemberId, WireEncoding),
    /// Something to tell the member at once (a warning): unlike its requests, never held
    /// behind its messages in flight.
    Notice(MemberId, Event),
    /// A line of the member's that the session could not take (unparsable, too long): the
    /// error is told in its place among the member's requests, after what it sent before.
    Refused(MemberId, String),
    /// Where the connection comes from (`127.0.0.1:5000`, `unix:pid=7`), sent right after
    /// `Connect`: failed logins are counted per client address as well as per nick.
    Address(MemberId, String),
    /// The connection ended.
    Leave(MemberId, Option<String>),
}

impl Request {
    /// The member a request comes from and concerns, for one that must take effect in order.
    fn member(&self) -> Option<MemberId> {
        match self {
            Request::Command(id, _)
            | Request::SetEncoding(id, _)
            | Request::Refused(id, _)
            | Request::Leave(id, _) => Some(*id),
            Request::Connect { .. } | Request::Notice(..) | Request::Address(..) => None,
        }
    }

    /// A message to a room or a member: it is ordered by the writer, with the member's others.
    fn is_message(&self) -> bool {
        matches!(
            self,
            Request::Command(
                _,
                Command::Say { .. } | Command::Me { .. } | Command::Msg { .. }
            )
        )
    }
}

/// The hub's settings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Messages replayed to a member joining a room.
    pub history_replay: usize,
    /// Rooms one member may be in at once.
    pub max_rooms: usize,
    /// Capacity of each member's outbox, in lines.
    pub outbox: usize,
    /// Rooms with more members than this don't announce joins, parts, quits and nick changes
    /// to everyone (only to the member concerned): in a big room they are noise, and they
    /// would cost O(members²) lines as a crowd arrives.
    pub announce_limit: usize,
    /// Private messages kept per registered nick while it is offline (0: none are kept).
    pub max_mail: usize,
    /// The longest line a member may send (`--max-line`), told to it in its welcome.
    pub max_line: usize,
}

/// Who a stored message goes to once committed.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The sender.
    pub from: MemberId,
    /// The recipient of a private message.
    pub to: Option<MemberId>,
}

struct Member {
    nick: String,
    outbox: Outbox,
    format: Format,
    encoding: WireEncoding,
    /// Rooms joined, oldest first.
    rooms: Vec<String>,
    /// Where plain lines go.
    current: Option<String>,
    /// Warned about a filling outbox, and not yet caught up.
    is_warned: bool,
    /// What failed logins from this connection count against (its address), if known.
    source: Option<String>,
    /// Holds its nick as the registered owner (logged in or just registered).
    is_logged_in: bool,
    /// An account command of this member's is being checked.
    is_checking: bool,
    /// Its messages handed to the writer and not yet delivered.
    in_flight: usize,
    /// A `/history` of its is being read by the reader thread.
    is_reading: bool,
    /// Its requests held back until what it did before has taken effect (see [`Hub::handle`]).
    held: VecDeque<Request>,
}

impl Member {
    /// Whether `request` of this member's must wait for what it did before (see
    /// [`Hub::handle`]).
    fn blocks(&self, request: &Request) -> bool {
        self.is_checking || self.is_reading || (!request.is_message() && self.in_flight > 0)
    }

    fn render(&self, event: &Event) -> Bytes {
        render(event, self.format, self.encoding, &self.nick)
    }
}

/// `event` as read in `format` and `encoding` by the member called `viewer`.
fn render(event: &Event, format: Format, encoding: WireEncoding, viewer: &str) -> Bytes {
    match format {
        Format::Json => json_line(event),
        Format::Text => {
            let text = event.to_text(viewer);
            if encoding.is_utf8() {
                Bytes::from(text)
            } else {
                Bytes::from(encoding.encode_message(&text))
            }
        }
    }
}

fn json_line(event: &Event) -> Bytes {
    let mut line = event.to_json();
    line.push('\n');
    Bytes::from(line)
}

/// Room events rendered at most once per (format, encoding), whatever the room's size: a run of
/// events becomes one chunk of lines that every member with that rendering shares.
#[derive(Default)]
struct Renderings {
    json: Option<Bytes>,
    text: Option<String>,
    encoded: Vec<(WireEncoding, Bytes)>,
}

impl Renderings {
    /// The bytes rendered so far.
    fn size(&self) -> usize {
        let json = self.json.as_ref().map_or(0, Bytes::len);
        let text = self.text.as_ref().map_or(0, String::len);
        json + text + self.encoded.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    /// `events` as `member` reads them; the same `events` every call.
    fn bytes_for(&mut self, events: &[Event], member: &Member) -> Bytes {
        match member.format {
            Format::Json => self
                .json
                .get_or_insert_with(|| {
                    let mut lines = String::new();
                    for event in events {
                        lines.push_str(&event.to_json());
                        lines.push('\n');
                    }
                    Bytes::from(lines)
                })
                .clone(),
            Format::Text => {
                if let Some((_, bytes)) = self.encoded.iter().find(|(e, _)| *e == member.encoding) {
                    return bytes.clone();
                }
                // Room events read the same for every viewer.
                let text = self
                    .text
                    .get_or_insert_with(|| events.iter().map(|e| e.to_text("")).collect());
                let bytes = if member.encoding.is_utf8() {
                    Bytes::from(text.clone())
                } else {
                    Bytes::from(member.encoding.encode_message(text))
                };
                self.encoded.push((member.encoding, bytes.clone()));
                bytes
            }
        }
    }
}

/// A room's replay on joining (its last `--history` messages), read and rendered once for
/// everyone who joins it until its next message: when a crowd joins at once (every client
/// reconnecting after a restart), reading and rendering it per member was four-fifths of the
/// hub's work.
///
/// It stays right because stored messages are never changed or deleted, and a room's next one
/// is delivered (and ends its replay) before anyone can be replayed it. Pruning history would
/// have to end the replays too.
struct Replay {
    is_empty: bool,
    /// How many messages it holds.
    message_count: usize,
    /// Its messages' text, in bytes.
    text_bytes: usize,
    /// One [`Event::History`]. Its messages are all the room's, so, like every room event, it
    /// reads the same for every viewer (a private message would not: "pm to …").
    event: [Event; 1],
    renderings: Renderings,
}

impl Replay {
    /// About the memory it holds: its renderings, and its messages' text.
    fn size(&self) -> usize {
        self.renderings.size() + self.text_bytes
    }
}

/// Most rooms whose replay the hub keeps, and most bytes all of them may hold (each encoding a
/// joiner reads in adds a rendering); past either, they are all dropped and read afresh.
const MAX_REPLAYS: usize = 64;
const MAX_REPLAY_BYTES: usize = 4 << 20;

#[derive(Default)]
struct Room {
    members: Vec<MemberId>,
    /// Its `/who` reply, rendered for whoever asked, until its members or their nicks change.
    who: Option<Box<Cached>>,
}

/// A reply kept for everyone who asks for it: one event, rendered once per (format, encoding).
struct Cached {
    event: [Event; 1],
    renderings: Renderings,
}

/// A `/history` for the reader thread to read and render.
#[derive(Debug)]
struct ReadJob {
    member: MemberId,
    room: String,
    limit: usize,
    before: Option<i64>,
    /// The newest message delivered when it was asked for (see [`Store::recent`]).
    up_to: i64,
    format: Format,
    encoding: WireEncoding,
}

/// A `/history` read: the reply rendered for its member and the lines it holds, or why not.
#[derive(Debug)]
struct ReadDone {
    member: MemberId,
    reply: Result<(Bytes, usize), StoreError>,
}

/// Reads and renders `job` (on the reader thread).
fn read_history(store: &Store, job: ReadJob) -> ReadDone {
    let reply = store
        .recent(&job.room, job.limit, job.before, job.up_to)
        .map(|messages| {
            let lines = 1 + messages.len();
            let event = Event::History {
                room: job.room,
                messages,
            };
            // Room history reads the same for every viewer.
            (render(&event, job.format, job.encoding, ""), lines)
        });
    ReadDone {
        member: job.member,
        reply,
    }
}

/// The hub's state. Build with [`Hub::new`], then drive with [`Hub::run`].
pub struct Hub {
    config: HubConfig,
    /// Boxed: a table sized for thousands of members then holds pointers, not whole members.
    members: HashMap<MemberId, Box<Member>>,
    /// Nick key ([`account::key`]) to member.
    nicks: HashMap<String, MemberId>,
    /// Who holds a nick of each look-alike key.
    looks: Looks,
    rooms: BTreeMap<String, Room>,
    /// The `/rooms` reply, rendered for whoever asked, until a room appears or goes or its
    /// count changes.
    rooms_reply: Option<Box<Cached>>,
    store: Store,
    writer: Writer<Route>,
    /// Newest message id delivered: history replays stop here, so nothing shows twice.
    delivered_up_to: i64,
    /// Messages handed to the writer and not yet delivered.
    in_flight: usize,
    /// Rooms' replays on joining, each until the room's next message.
    replays: HashMap<String, Replay>,
    guests: u64,
    /// Members to disconnect once the current fan-out is done, with the reason.
    doomed: Vec<(MemberId, String)>,
    is_closing: bool,
    /// Registered nicks: account key ([`account::key`]) to the nick as registered.
    accounts: HashMap<String, String>,
    /// Look-alike key of each registered nick to the keys of the accounts with it (one, except
    /// for look-alikes registered before the rule).
    account_looks: HashMap<String, Vec<String>>,
    /// Nicks being registered (hashing), by key, as typed: no one else may take them meanwhile,
    /// nor register a look-alike.
    registering: HashMap<String, String>,
    /// Runs password hashing and checks off the hub.
    checker: Checker,
    /// Where the checker's results arrive; taken by [`Hub::run`].
    checked: Option<mpsc::UnboundedReceiver<Checked>>,
    /// Failed logins per account key and client address.
    nick_failures: FailureLimit,
    /// Failed logins per account key, from all addresses.
    nick_total_failures: FailureLimit,
    /// Failed logins per client address.
    source_failures: FailureLimit,
    /// Mail handed to the writer and not yet back, per recipient key.
    mail_in_flight: HashMap<String, usize>,
    /// Reads `/history` off the hub.
    reader: Reader<ReadJob>,
    /// Where the reader's replies arrive; taken by [`Hub::run`].
    read: Option<mpsc::UnboundedReceiver<ReadDone>>,
}

impl Hub {
    /// A hub over `store`, sending messages to `writer` for commit.
    ///
    /// # Errors
    /// The store could not be read, or its reader thread not started.
    pub fn new(
        config: HubConfig,
        store: Store,
        writer: Writer<Route>,
    ) -> Result<Hub, super::history::StoreError> {
        let delivered_up_to = store.last_id()?;
        let accounts: HashMap<String, String> = store.accounts()?.into_iter().collect();
        let account_looks = account_looks(&accounts);
        let (checker, checked) = Checker::new(store.clone());
        let (read_tx, read) = mpsc::unbounded_channel();
        let reader = store.spawn_reader(read_tx, read_history)?;
        Ok(Hub {
            config,
            members: HashMap::new(),
            nicks: HashMap::new(),
            looks: Looks::default(),
            rooms: BTreeMap::new(),
            rooms_reply: None,
            store,
            writer,
            delivered_up_to,
            in_flight: 0,
            guests: 0,
            doomed: Vec::new(),
            replays: HashMap::new(),
            is_closing: false,
            accounts,
            account_looks,
            registering: HashMap::new(),
            checker,
            checked: Some(checked),
            nick_failures: FailureLimit::new(LOGIN_FAILURES_PER_NICK, LOGIN_WINDOW),
            nick_total_failures: FailureLimit::new(LOGIN_FAILURES_PER_NICK_TOTAL, LOGIN_WINDOW),
            source_failures: FailureLimit::new(LOGIN_FAILURES_PER_SOURCE, LOGIN_WINDOW),
            mail_in_flight: HashMap::new(),
            reader,
            read: Some(read),
        })
    }

    /// Runs until `shutdown`: then stops taking messages, delivers everything the writer still
    /// commits, tells every member, and closes their outboxes.
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut committed: mpsc::UnboundedReceiver<Batch<Route>>,
        shutdown: CancellationToken,
    ) {
        let mut checked = self
            .checked
            .take()
            .unwrap_or_else(|| mpsc::unbounded_channel().1);
        let mut read = self
            .read
            .take()
            .unwrap_or_else(|| mpsc::unbounded_channel().1);
        loop {
            tokio::select! {
                biased;
                batch = committed.recv() => match batch {
                    Some(batch) => self.deliver(batch),
                    // The writer has committed its last batch (after close).
                    None => break,
                },
                // The hub keeps a sender for new jobs, so this channel never ends.
                Some(result) = checked.recv() => self.apply_check(result),
                // The hub keeps the reader's sender too.
                Some(done) = read.recv() => self.apply_read(done),
                request = requests.recv(), if self.in_flight < self.max_in_flight() => match request {
                    Some(request) => self.handle(request),
                    None => self.close_writer(),
                },
                () = shutdown.cancelled(), if !self.is_closing => self.close_writer(),
            }
            self.settle();
        }
        // The reader first: the writer's connection, closed last, tidies the WAL away. With
        // no one to hear its answers, it stops after the read it is on.
        drop(read);
        self.reader.finish();
        self.writer.finish();
        let notice = Event::Info {
            text: "server shutting down; bye".into(),
        };
        for member in self.members.values() {
            member.outbox.close(Some(member.render(&notice)));
        }
        // Dropping the members closes their outboxes: each session flushes and ends.
        self.members.clear();
    }

    /// Most messages in flight: a quarter of an outbox, so that one committed batch cannot fill
    /// the outbox of a member who keeps up.
    fn max_in_flight(&self) -> usize {
        (self.config.outbox / 4).max(1)
    }

    fn close_writer(&mut self) {
        self.is_closing = true;
        self.writer.close();
    }

    /// Handles `request` now, or holds it back until what its member did before has taken
    /// effect. A message is delivered once committed, later than the hub reads it, so a
    /// member's `/part`, `/nick`, `/quit` (or its leaving) waits for its messages in flight:
    /// the room then hears the message before the notice, and the sender gets its own copy.
    /// While its password is being checked everything of the member's waits, so that a
    /// message typed after `/login` goes out under the nick logged in. Messages alone do not
    /// wait for messages: they keep their order through the writer.
    fn handle(&mut self, request: Request) {
        let Some(id) = self.must_wait(&request) else {
            return self.handle_now(request);
        };
        let member = self.members.get_mut(&id).expect("present");
        // Leaving is never dropped (a session sends it once, and stops reading after /quit):
        // dropped, it would leave a member behind that no connection holds.
        let is_leaving = matches!(
            request,
            Request::Leave(..) | Request::Command(_, Command::Quit(_))
        );
        if member.held.len() < MAX_HELD_REQUESTS || is_leaving {
            member.held.push_back(request);
        } else {
            self.error(
                id,
                "too many requests waiting for your earlier ones to take effect; \
                 this one was dropped (slow down)",
            );
        }
    }

    /// The member whose earlier doings `request` must wait for, if it must.
    fn must_wait(&self, request: &Request) -> Option<MemberId> {
        let id = request.member()?;
        let member = self.members.get(&id)?;
        (!member.held.is_empty() || member.blocks(request)).then_some(id)
    }

    /// Handles the requests `id` had held back, in order, while they need not wait.
    fn release(&mut self, id: MemberId) {
        // A member being cut off is gone for the room: what it sent after is not heard.
        if self.is_doomed(id) {
            return;
        }
        loop {
            let Some(member) = self.members.get_mut(&id) else {
                return;
            };
            match member.held.front() {
                Some(next) if !member.blocks(next) => {}
                _ => return,
            }
            let request = member.held.pop_front().expect("a front");
            self.handle_now(request);
        }
    }

    fn handle_now(&mut self, request: Request) {
        match request {
            Request::Connect {
                id,
                outbox,
                encoding,
                format,
            } => self.connect(id, outbox, encoding, format),
            Request::Command(id, command) => self.command(id, command),
            Request::SetEncoding(id, encoding) => {
                if let Some(member) = self.members.get_mut(&id) {
                    member.encoding = encoding;
                    let text = format!("your encoding is now {}", encoding.name());
                    self.tell(id, &Event::Info { text });
                }
            }
            Request::Notice(id, event) => self.tell(id, &event),
            Request::Refused(id, text) => self.error(id, &text),
            Request::Address(id, peer) => {
                if let Some(member) = self.members.get_mut(&id) {
                    member.source = Some(account::source_key(&peer));
                }
            }
            Request::Leave(id, reason) => self.remove(id, reason, None),
        }
    }

    /// The next `guestN` nick that nobody holds and nobody has registered.
    fn fresh_guest(&mut self) -> String {
        loop {
            self.guests += 1;
            let nick = format!("guest{}", self.guests);
            if !self.nicks.contains_key(&nick)
                && !self.accounts.contains_key(&nick)
                && !self.registering.contains_key(&nick)
                && self.look_alike(None, &nick, &nick).is_none()
            {
                return nick;
            }
        }
    }

    fn connect(&mut self, id: MemberId, outbox: Outbox, encoding: WireEncoding, format: Format) {
        let nick = self.fresh_guest();
        self.nicks.insert(nick.clone(), id);
        self.looks.add(&account::look(&nick), id);
        self.members.insert(
            id,
            Box::new(Member {
                nick: nick.clone(),
                outbox,
                format,
                encoding,
                rooms: Vec::new(),
                current: None,
                is_warned: false,
                source: None,
                is_logged_in: false,
                is_checking: false,
                in_flight: 0,
                is_reading: false,
                held: VecDeque::new(),
            }),
        );
        self.tell(
            id,
            &Event::Welcome {
                nick,
                room: LOBBY.into(),
                version: env!("CARGO_PKG_VERSION"),
                max_line: self.config.max_line,
                last_id: self.delivered_up_to,
            },
        );
        self.join(id, LOBBY.to_string());
    }

    fn command(&mut self, id: MemberId, command: Command) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        if self.is_closing
            && matches!(
                command,
                Command::Say { .. } | Command::Me { .. } | Command::Msg { .. }
            )
        {
            self.error(id, "the server is shutting down; message not sent");
            return;
        }
        if self.is_closing
            && matches!(
                command,
                Command::Register(_) | Command::Login { .. } | Command::Password { .. }
            )
        {
            self.error(id, "the server is shutting down; try again later");
            return;
        }
        match command {
            Command::Say { room, text } => self.say(id, room, Kind::Say, text),
            Command::Me { room, text } => self.say(id, room, Kind::Me, text),
            Command::Nick(nick) => self.nick(id, nick),
            Command::Join(room) => self.join(id, room),
            Command::Part(room) => self.part(id, room),
            Command::Msg { to, text } => self.private(id, &to, text),
            Command::Who(room) => {
                let Some(room) = room.or_else(|| member.current.clone()) else {
                    return self.error(id, "you are in no room; /who #room");
                };
                self.who(id, room);
            }
            Command::Rooms => self.list_rooms(id),
            Command::History {
                room,
                limit,
                before,
            } => {
                let Some(room) = room.or_else(|| member.current.clone()) else {
                    return self.error(id, "you are in no room; /join #room first");
                };
                if !member.rooms.contains(&room) {
                    return self.error(id, &format!("you are not in {room}; /join {room} first"));
                }
                let limit = limit
                    .unwrap_or(self.config.history_replay.max(1))
                    .min(MAX_HISTORY);
                self.history(id, room, limit, before, true);
            }
            Command::Encoding(_) => {
                // Sessions switch encodings themselves and send SetEncoding.
            }
            Command::Json => {
                if let Some(member) = self.members.get_mut(&id) {
                    member.format = Format::Json;
                }
                self.tell_state(id);
            }
            Command::Quit(reason) => {
                self.tell(id, &Event::Info { text: "bye".into() });
                self.remove(id, reason, None);
            }
            Command::Help => self.tell(id, &Event::Info { text: HELP.into() }),
            Command::Register(password) => self.register(id, password),
            Command::Login { nick, password } => self.login(id, nick, password),
            Command::Password { old, new } => self.change_password(id, old, new),
        }
    }

    fn say(&mut self, id: MemberId, room: Option<String>, kind: Kind, text: String) {
        let member = &self.members[&id];
        let Some(room) = room.or_else(|| member.current.clone()) else {
            return self.error(id, "you are in no room; /join #room first");
        };
        if !member.rooms.contains(&room) {
            return self.error(id, &format!("you are not in {room}; /join {room} first"));
        }
        let record = Record {
            id: 0,
            ts: now_ms(),
            kind,
            room: Some(room),
            nick: member.nick.clone(),
            to: None,
            text,
        };
        self.submit(Route { from: id, to: None }, record, false);
    }

    fn private(&mut self, id: MemberId, to: &str, text: String) {
        let key = account::key(to);
        let Some(&target) = self.nicks.get(&key) else {
            if let Some(owner) = self.accounts.get(&key).cloned() {
                return self.keep(id, key, owner, text);
            }
            return self.error(id, &format!("no one called '{to}' is here (see /who)"));
        };
        let record = self.private_record(id, self.members[&target].nick.clone(), text);
        self.submit(
            Route {
                from: id,
                to: Some(target),
            },
            record,
            false,
        );
    }

    /// A private message from `id` to the nick `to`, not yet stored.
    fn private_record(&self, id: MemberId, to: String, text: String) -> Record {
        Record {
            id: 0,
            ts: now_ms(),
            kind: Kind::Private,
            room: None,
            nick: self.members[&id].nick.clone(),
            to: Some(to),
            text,
        }
    }

    /// A private message to `owner`, registered and offline: stored with a mailbox mark, if
    /// the mailbox has room.
    fn keep(&mut self, id: MemberId, key: String, owner: String, text: String) {
        if self.config.max_mail == 0 {
            let text = format!("{owner} is offline, and this server keeps no mail (--max-mail 0)");
            return self.error(id, &text);
        }
        let stored = match self.store.mail_count(&key, self.delivered_up_to) {
            Ok(stored) => stored,
            Err(err) => {
                tracing::error!("mailbox count failed: {err}");
                return self.error(id, "mail is unavailable right now; message not sent");
            }
        };
        let waiting = stored + self.mail_in_flight.get(&key).copied().unwrap_or(0);
        if waiting >= self.config.max_mail {
            let kept = if waiting == 1 {
                "1 message".to_string()
            } else {
                format!("{waiting} messages")
            };
            let text = format!(
                "{owner}'s mailbox is full ({kept} kept, the most allowed: --max-mail); \
                 message not sent"
            );
            return self.error(id, &text);
        }
        let record = self.private_record(id, owner, text);
        let route = Route { from: id, to: None };
        if self.submit(route, record, true) {
            *self.mail_in_flight.entry(key).or_default() += 1;
        }
    }

    /// Hands a message to the writer; `false` (and the sender told) if it has stopped.
    fn submit(&mut self, route: Route, record: Record, is_mail: bool) -> bool {
        if self
            .writer
            .submit(Pending {
                author: route,
                record,
                is_mail,
            })
            .is_err()
        {
            self.error(route.from, "history is not being saved; message not sent");
            false
        } else {
            self.in_flight += 1;
            if let Some(member) = self.members.get_mut(&route.from) {
                member.in_flight += 1;
            }
            true
        }
    }

    /// Delivers a committed batch (or tells the senders it failed).
    fn deliver(&mut self, batch: Batch<Route>) {
        self.in_flight = self.in_flight.saturating_sub(batch.items.len());
        let mut authors: Vec<MemberId> = Vec::new();
        for item in &batch.items {
            let from = item.author.from;
            if let Some(member) = self.members.get_mut(&from) {
                member.in_flight = member.in_flight.saturating_sub(1);
                if member.in_flight == 0 && !member.held.is_empty() {
                    authors.push(from);
                }
            }
        }
        self.deliver_batch(batch);
        // What their senders did after these messages can take effect now.
        for id in authors {
            self.release(id);
        }
    }

    fn deliver_batch(&mut self, batch: Batch<Route>) {
        let mailboxes = batch.items.iter().filter(|item| item.is_mail);
        for key in mailboxes.filter_map(|item| item.record.to.as_deref().map(account::key)) {
            if let Some(count) = self.mail_in_flight.get_mut(&key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.mail_in_flight.remove(&key);
                }
            }
        }
        if let Some(reason) = batch.error {
            for item in batch.items {
                let text = format!("not sent: the server could not save it ({reason})");
                self.error(item.author.from, &text);
            }
            return;
        }
        // Consecutive messages to one room go out as one chunk per member: one queue push and
        // one write per member for the whole run, however many messages it holds.
        let mut run: Vec<Event> = Vec::new();
        let mut run_room = String::new();
        for Pending {
            author,
            record,
            is_mail,
        } in batch.items
        {
            self.delivered_up_to = record.id;
            if !run.is_empty() && record.room.as_deref() != Some(run_room.as_str()) {
                self.broadcast_run(&run_room, &std::mem::take(&mut run));
            }
            match record.room.clone() {
                Some(room) => {
                    // Its replay no longer ends with the room's last message.
                    self.replays.remove(&room);
                    run_room = room;
                    run.push(Event::Message(record));
                }
                None if is_mail => self.deliver_kept(author.from, record),
                None => match author.to.filter(|to| *to != author.from) {
                    // Its recipient left while it was being stored.
                    Some(to) if !self.members.contains_key(&to) => {
                        self.deliver_to_the_gone(author.from, record);
                    }
                    to => {
                        let event = Event::Private(record);
                        self.tell(author.from, &event);
                        if let Some(to) = to {
                            self.tell(to, &event);
                        }
                    }
                },
            }
        }
        if !run.is_empty() {
            self.broadcast_run(&run_room, &run);
        }
    }

    fn nick(&mut self, id: MemberId, nick: String) {
        let key = account::key(&nick);
        match self.nicks.get(&key) {
            Some(&owner) if owner != id => {
                return self.error(id, &format!("nick '{nick}' is taken"));
            }
            // Its own nick, in another case: a registered one stays its own.
            Some(_) => {}
            None => {
                if self.accounts.contains_key(&key) {
                    let text = format!(
                        "nick '{nick}' is registered; /login {nick} PASSWORD if it is yours"
                    );
                    return self.error(id, &text);
                }
                if self.registering.contains_key(&key) {
                    let text = format!("nick '{nick}' is being registered; choose another");
                    return self.error(id, &text);
                }
            }
        }
        if let Some((other, why)) = self.look_alike(Some(id), &nick, &key) {
            let text = format!("nick '{nick}' looks like '{other}', which is {why}");
            return self.error(id, &text);
        }
        // Checked here, not when parsing: registered nicks from before the rule may still log
        // in and receive messages.
        if let Some(text) = account::mixed_scripts(&nick) {
            return self.error(id, &text);
        }
        self.rename(id, nick);
    }

    /// A nick that `nick` (key `key`) could be taken for on screen, held by a member other
    /// than `id` or registered under another key, with "taken" or "registered".
    fn look_alike(
        &self,
        id: Option<MemberId>,
        nick: &str,
        key: &str,
    ) -> Option<(String, &'static str)> {
        let look = account::look(nick);
        let holder = self
            .looks
            .holders(&look)
            .filter(|holder| Some(*holder) != id)
            .filter_map(|holder| self.members.get(&holder))
            // The table keeps a hash of each look: see that this one is the same look.
            .find(|member| {
                account::key(&member.nick) != key && account::look(&member.nick) == look
            });
        if let Some(member) = holder {
            return Some((member.nick.clone(), "taken"));
        }
        let account = self
            .account_looks
            .get(&look)
            .into_iter()
            .flatten()
            .find(|account| *account != key)?;
        let owner = self.accounts.get(account).cloned().unwrap_or_default();
        Some((owner, "registered"))
    }

    /// Gives `id` the nick `nick` (free, or its own in another case) and tells everyone who
    /// shares a room with it. Moving off a registered nick logs it out of that nick.
    fn rename(&mut self, id: MemberId, nick: String) {
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut member.nick, nick.clone());
        if old == nick {
            return self.tell(
                id,
                &Event::Info {
                    text: format!("you are already {nick}"),
                },
            );
        }
        let key = account::key(&nick);
        let old_key = account::key(&old);
        let is_logged_out = member.is_logged_in && old_key != key;
        if is_logged_out {
            member.is_logged_in = false;
        }
        if self.nicks.get(&old_key) == Some(&id) {
            self.nicks.remove(&old_key);
        }
        self.nicks.insert(key, id);
        self.looks.remove(&account::look(&old), id);
        self.looks.add(&account::look(&nick), id);
        for room in &member.rooms {
            if let Some(found) = self.rooms.get_mut(room) {
                found.who = None;
            }
        }
        let event = Event::Nick {
            old: old.clone(),
            new: nick,
        };
        for peer in self.audience(id) {
            self.tell(peer, &event);
        }
        if is_logged_out {
            let reason = format!("you changed nick; /login {old} PASSWORD to be {old} again");
            self.tell(id, &Event::LoggedOut { nick: old, reason });
        }
        self.tell_state(id);
    }

    /// `/register`: protects the nick `id` holds with `password` (hashed off the hub).
    fn register(&mut self, id: MemberId, password: Password) {
        let member = &self.members[&id];
        let nick = member.nick.clone();
        let key = account::key(&nick);
        if member.is_logged_in {
            let text = format!(
                "{nick} is registered to you already; /password OLD NEW changes its password"
            );
            return self.error(id, &text);
        }
        if self.accounts.contains_key(&key) || self.registering.contains_key(&key) {
            return self.error(id, &format!("nick '{nick}' is registered already"));
        }
        if is_guest_nick(&key) {
            return self.error(
                id,
                "guest nicks cannot be registered; choose a nick with /nick NAME first",
            );
        }
        // `/nick` refused it then, but the look-alike may have come since: registered by a
        // member cut off while its registration was checked, or from before the rule.
        if let Some((other, why)) = self.look_alike(Some(id), &nick, &key) {
            let text = format!("nick '{nick}' looks like '{other}', which is {why}");
            return self.error(id, &text);
        }
        // Nor may two look-alikes be registered at once: both would be, once hashed.
        let look = account::look(&nick);
        if let Some(other) = self
            .registering
            .values()
            .find(|other| account::look(other) == look)
        {
            let text = format!("nick '{nick}' looks like '{other}', which is being registered");
            return self.error(id, &text);
        }
        let member = &self.members[&id];
        let source = member.source.clone();
        // Each registration costs a hash: it counts against the address, success or not.
        let job = Job::Register {
            nick: nick.clone(),
            password,
        };
        if self.start_check(id, key.clone(), nick.clone(), source, false, job) {
            self.registering.insert(key, nick);
        }
    }

    /// Starts a password job for `id`, unless the failure limits (of the address, and of the
    /// account too with `counts_nick`) or a full checker refuse it, telling `id` why; counts
    /// the attempt. Whether it started.
    fn start_check(
        &mut self,
        id: MemberId,
        key: String,
        nick: String,
        source: Option<String>,
        counts_nick: bool,
        job: Job,
    ) -> bool {
        let now = Instant::now();
        let counted = counts_nick.then_some(key.as_str());
        if let Some(text) = self.login_refusal(counted, source.as_deref(), now) {
            self.error(id, &text);
            return false;
        }
        if self.checker.is_full() {
            self.error(id, BUSY);
            return false;
        }
        self.count_attempt(counted, source.as_deref(), now);
        let member = self.members.get_mut(&id).expect("present");
        // One check at a time: what a member does while one runs waits (see `handle`).
        debug_assert!(
            !member.is_checking,
            "a second password check for one member"
        );
        member.is_checking = true;
        self.checker.start(id, key, nick, source, job);
        true
    }

    /// Whether failed logins for `key` or from `source` are over their limit: the error to
    /// give, without checking any password.
    fn login_refusal(
        &self,
        key: Option<&str>,
        source: Option<&str>,
        now: Instant,
    ) -> Option<String> {
        let wait = [
            key.and_then(|key| self.nick_failures.wait(&per_source(key, source), now)),
            key.and_then(|key| self.nick_total_failures.wait(key, now)),
            source.and_then(|source| self.source_failures.wait(source, now)),
        ]
        .into_iter()
        .flatten()
        .max()?;
        Some(account::retry_text(wait))
    }

    /// Counts a login attempt (given back if it succeeds).
    fn count_attempt(&mut self, key: Option<&str>, source: Option<&str>, now: Instant) {
        if let Some(key) = key {
            self.nick_failures.attempt(&per_source(key, source), now);
            self.nick_total_failures.attempt(key, now);
        }
        if let Some(source) = source {
            self.source_failures.attempt(source, now);
        }
    }

    /// `/login`: claims the registered `nick` if `password` is right (checked off the hub).
    fn login(&mut self, id: MemberId, nick: String, password: Password) {
        let member = &self.members[&id];
        let key = account::key(&nick);
        if member.is_logged_in && account::key(&member.nick) == key {
            let text = format!("you are logged in as {} already", member.nick);
            return self.tell(id, &Event::Info { text });
        }
        let source = member.source.clone();
        let now = Instant::now();
        if let Some(text) = self.login_refusal(None, source.as_deref(), now) {
            return self.error(id, &text);
        }
        if !self.accounts.contains_key(&key) {
            // Trying nick after nick is guessing too: it counts against the address.
            self.count_attempt(None, source.as_deref(), now);
            return self.error(id, &format!("nick '{nick}' is not registered"));
        }
        self.start_check(id, key, nick, source, true, Job::Login { password });
    }

    /// `/password`: changes the password of the nick `id` is logged in as, if `old` is right.
    fn change_password(&mut self, id: MemberId, old: Password, new: Password) {
        let member = &self.members[&id];
        if !member.is_logged_in {
            return self.error(
                id,
                "you are not logged in; /login NICK PASSWORD first (or /register PASSWORD)",
            );
        }
        let nick = member.nick.clone();
        let key = account::key(&nick);
        let source = member.source.clone();
        let job = Job::ChangePassword { old, new };
        self.start_check(id, key, nick, source, true, job);
    }

    /// Applies a finished password job to the state of now: the member may have left, and
    /// someone else may hold the nick by now.
    fn apply_check(&mut self, result: Checked) {
        self.checker.finished();
        let Checked {
            member: id,
            key,
            nick,
            source,
            kind,
            outcome,
        } = result;
        if let Some(member) = self.members.get_mut(&id) {
            member.is_checking = false;
        }
        self.apply_checked(id, key, nick, source, kind, outcome);
        self.release(id);
    }

    fn apply_checked(
        &mut self,
        id: MemberId,
        key: String,
        nick: String,
        source: Option<String>,
        kind: JobKind,
        outcome: Outcome,
    ) {
        // A success gives its attempt back; the address keeps the cost of a /password (two
        // hashes) counted, so it cannot ask for hashing without end.
        let succeeded = |hub: &mut Hub, gives_back_source: bool| {
            hub.nick_failures
                .succeeded(&per_source(&key, source.as_deref()));
            hub.nick_total_failures.succeeded(&key);
            if let Some(source) = &source
                && gives_back_source
            {
                hub.source_failures.succeeded(source);
            }
        };
        match (kind, outcome) {
            (JobKind::Register, Outcome::Registered) => {
                self.registering.remove(&key);
                self.add_account(key.clone(), nick.clone());
                // Its nick could not change while this was checked; it may have left.
                if let Some(member) = self.members.get_mut(&id)
                    && account::key(&member.nick) == key
                {
                    member.is_logged_in = true;
                    self.tell(id, &Event::Registered { nick });
                }
            }
            (JobKind::Register, Outcome::AlreadyRegistered) => {
                // Registered in the database behind this hub's back: it is protected now.
                self.registering.remove(&key);
                self.add_account(key.clone(), nick.clone());
                self.error(id, &format!("nick '{nick}' is registered already"));
                if self.nicks.get(&key) == Some(&id) {
                    let guest = self.fresh_guest();
                    self.rename(id, guest);
                }
            }
            (JobKind::Register, _) => {
                self.registering.remove(&key);
                let text = format!("could not register {nick}: server error; try again later");
                self.error(id, &text);
            }
            (JobKind::Login, Outcome::Verified { nick }) => {
                succeeded(self, true);
                self.apply_login(id, nick);
            }
            (JobKind::Login, Outcome::WrongPassword) => {
                self.error(id, &format!("wrong password for '{nick}'"));
            }
            (JobKind::Login, Outcome::NoAccount) => {
                self.error(id, &format!("nick '{nick}' is not registered"));
            }
            (JobKind::Login, _) => {
                self.error(id, "login failed: server error; try again later");
            }
            (JobKind::ChangePassword, Outcome::PasswordChanged) => {
                succeeded(self, false);
                let nick = self.accounts.get(&key).cloned().unwrap_or(nick);
                self.tell(id, &Event::PasswordChanged { nick });
            }
            (JobKind::ChangePassword, Outcome::WrongPassword) => {
                self.error(id, "wrong password; the password is unchanged");
            }
            (JobKind::ChangePassword, _) => {
                self.error(
                    id,
                    "could not change the password: server error; try again later",
                );
            }
        }
    }

    /// Notes the account `key`, registered as `nick`.
    fn add_account(&mut self, key: String, nick: String) {
        let look = account::look(&nick);
        let keys = self.account_looks.entry(look).or_default();
        if !keys.contains(&key) {
            keys.push(key.clone());
        }
        self.accounts.insert(key, nick);
    }

    /// `id` proved it owns `nick`: it takes the nick (from whoever holds it, who becomes a
    /// guest) and gets the mail kept for it.
    fn apply_login(&mut self, id: MemberId, nick: String) {
        if !self.members.contains_key(&id) {
            return;
        }
        let key = account::key(&nick);
        if let Some(&holder) = self.nicks.get(&key)
            && holder != id
        {
            // Only a member logged in as a registered nick holds it.
            let guest = self.fresh_guest();
            if let Some(member) = self.members.get_mut(&holder) {
                member.is_logged_in = false;
            }
            let reason = format!("{nick} logged in from another connection; you are {guest} now");
            self.tell(
                holder,
                &Event::LoggedOut {
                    nick: nick.clone(),
                    reason,
                },
            );
            self.rename(holder, guest);
        }
        self.rename(id, nick.clone());
        if let Some(member) = self.members.get_mut(&id) {
            member.is_logged_in = true;
        }
        self.tell(id, &Event::LoggedIn { nick });
        self.deliver_mail(id, &key);
    }

    /// Sends `id` the mail kept for account `key`, then takes it out of the mailbox (unless the
    /// member turned out unable to take it).
    fn deliver_mail(&mut self, id: MemberId, key: &str) {
        let messages = match self.store.mail(key, self.delivered_up_to) {
            Ok(messages) => messages,
            Err(err) => {
                tracing::error!("mailbox read failed: {err}");
                return self.error(id, "your kept messages cannot be read now; they stay kept");
            }
        };
        if messages.is_empty() {
            return;
        }
        let ids: Vec<i64> = messages.iter().map(|record| record.id).collect();
        self.tell(id, &Event::Mail { messages });
        self.remove_delivered_mail(id, &ids);
    }

    /// Takes messages `ids`, just queued for `id`, out of the mailbox; left there if `id` is
    /// being disconnected, so they are delivered at its next login instead.
    fn remove_delivered_mail(&mut self, id: MemberId, ids: &[i64]) {
        if self.is_doomed(id) || !self.members.contains_key(&id) {
            return;
        }
        if let Err(err) = self.store.remove_mail(ids) {
            // Left in the mailbox: delivered again at the next login rather than lost.
            tracing::error!("mailbox cleanup failed: {err}");
        }
    }

    /// A committed message for a mailbox: kept for later (the sender is told), unless its
    /// owner logged in while it was being stored, who then gets it now.
    fn deliver_kept(&mut self, from: MemberId, record: Record) {
        let key = record.to.as_deref().map(account::key).unwrap_or_default();
        let owner = self
            .nicks
            .get(&key)
            .copied()
            .filter(|owner| self.members.get(owner).is_some_and(|m| m.is_logged_in));
        match owner {
            Some(owner) => {
                let id = record.id;
                let event = Event::Private(record);
                self.tell(from, &event);
                if owner != from {
                    self.tell(owner, &event);
                }
                self.remove_delivered_mail(owner, &[id]);
            }
            None => self.tell(from, &Event::Kept(record)),
        }
    }

    /// A committed private message whose recipient left while it was being stored. To a
    /// registered nick it goes on like any message to it: to whoever is logged in as it now,
    /// or into its mailbox if that has room. Otherwise the sender is told it reached no one.
    fn deliver_to_the_gone(&mut self, from: MemberId, record: Record) {
        let to = record.to.clone().unwrap_or_default();
        let key = account::key(&to);
        if self.accounts.contains_key(&key) {
            let owner = self
                .nicks
                .get(&key)
                .copied()
                .filter(|owner| self.members.get(owner).is_some_and(|m| m.is_logged_in));
            if let Some(owner) = owner {
                let event = Event::Private(record);
                self.tell(from, &event);
                return self.tell(owner, &event);
            }
            let has_room = self
                .store
                .mail_count(&key, self.delivered_up_to)
                .is_ok_and(|stored| {
                    // As in `keep`: mail still being stored for the nick counts too.
                    let in_flight = self.mail_in_flight.get(&key).copied().unwrap_or(0);
                    stored + in_flight < self.config.max_mail
                });
            if has_room {
                match self.store.keep_mail(record.id, &key) {
                    Ok(()) => return self.tell(from, &Event::Kept(record)),
                    Err(err) => tracing::error!("mailbox write failed: {err}"),
                }
            }
        }
        self.tell(from, &Event::Private(record));
        self.error(from, &format!("{to} left before your message reached them"));
    }

    fn join(&mut self, id: MemberId, room: String) {
        let member = &self.members[&id];
        if member.rooms.contains(&room) {
            self.members.get_mut(&id).expect("present").current = Some(room.clone());
            self.tell(
                id,
                &Event::Info {
                    text: format!("now talking in {room}"),
                },
            );
            return self.tell_state(id);
        }
        if member.rooms.len() >= self.config.max_rooms {
            let count = member.rooms.len();
            let rooms = if count == 1 { "room" } else { "rooms" };
            let text = format!(
                "you are in {count} {rooms}, the most allowed (--max-rooms); /part one first"
            );
            return self.error(id, &text);
        }
        if self.config.history_replay > 0 {
            self.history(id, room.clone(), self.config.history_replay, None, false);
        }
        let found = self.rooms.entry(room.clone()).or_default();
        found.members.push(id);
        found.who = None;
        self.rooms_reply = None;
        let member = self.members.get_mut(&id).expect("present");
        member.rooms.push(room.clone());
        member.current = Some(room.clone());
        let nick = member.nick.clone();
        self.announce(id, &room.clone(), &Event::Join { room, nick });
        self.tell_state(id);
    }

    fn part(&mut self, id: MemberId, room: Option<String>) {
        let member = &self.members[&id];
        let Some(room) = room.or_else(|| member.current.clone()) else {
            return self.error(id, "you are in no room");
        };
        if !member.rooms.contains(&room) {
            return self.error(id, &format!("you are not in {room}"));
        }
        let nick = member.nick.clone();
        self.announce(
            id,
            &room,
            &Event::Part {
                room: room.clone(),
                nick,
            },
        );
        self.leave_room(id, &room);
        let member = self.members.get_mut(&id).expect("present");
        if member.current.as_deref() == Some(room.as_str()) {
            member.current = member.rooms.last().cloned();
        }
        let text = match &member.current {
            Some(current) => format!("you are now talking in {current}"),
            None => "you are in no room now; /join #room to talk".to_string(),
        };
        self.tell(id, &Event::Info { text });
        self.tell_state(id);
    }

    /// Takes `id` out of `room`, deleting the room when it empties (its history stays).
    fn leave_room(&mut self, id: MemberId, room: &str) {
        if let Some(found) = self.rooms.get_mut(room) {
            found.members.retain(|m| *m != id);
            found.who = None;
            self.rooms_reply = None;
            if found.members.is_empty() {
                self.rooms.remove(room);
                self.replays.remove(room);
            }
        }
        if let Some(member) = self.members.get_mut(&id) {
            member.rooms.retain(|r| r != room);
        }
    }

    /// Sends `id` the last `limit` messages of `room` (before `before`, if given). The replay
    /// on joining (and a plain `/history`) is answered here, from the cache if it can be;
    /// anything else is read by the reader thread. With `always`, an empty history is told too.
    fn history(
        &mut self,
        id: MemberId,
        room: String,
        limit: usize,
        before: Option<i64>,
        always: bool,
    ) {
        // Only the replay on joining (and a plain `/history`) is kept: paging back with
        // `before`, or a longer `/history N`, could hold a thousand lines for nobody.
        let is_replay = limit == self.config.history_replay && before.is_none();
        if !is_replay {
            return self.read_later(id, room, limit, before);
        }
        let mut replay = match self.replays.remove(&room) {
            Some(replay) => replay,
            None => match self.store.recent(&room, limit, None, self.delivered_up_to) {
                Ok(messages) => Replay {
                    is_empty: messages.is_empty(),
                    message_count: messages.len(),
                    text_bytes: messages.iter().map(|m| m.text.len()).sum(),
                    event: [Event::History {
                        room: room.clone(),
                        messages,
                    }],
                    renderings: Renderings::default(),
                },
                Err(err) => {
                    tracing::error!("history read failed: {err}");
                    return self.error(id, "history is unavailable right now");
                }
            },
        };
        if (always || !replay.is_empty)
            && let Some(member) = self.members.get(&id)
        {
            let bytes = replay.renderings.bytes_for(&replay.event, member);
            // A heading, then a line per message.
            self.reply(id, bytes, 1 + replay.message_count);
        }
        let held: usize = self.replays.values().map(Replay::size).sum();
        if self.replays.len() >= MAX_REPLAYS || held + replay.size() > MAX_REPLAY_BYTES {
            self.replays.clear();
        }
        if replay.size() <= MAX_REPLAY_BYTES {
            self.replays.insert(room, replay);
        }
    }

    /// Hands a `/history` the replay cache cannot answer to the reader thread. What `id` asks
    /// for next waits until the reply is queued (see [`Member::blocks`]), so nothing it asked
    /// for later overtakes it.
    fn read_later(&mut self, id: MemberId, room: String, limit: usize, before: Option<i64>) {
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        let job = ReadJob {
            member: id,
            room,
            limit,
            before,
            up_to: self.delivered_up_to,
            format: member.format,
            encoding: member.encoding,
        };
        if self.reader.read(job).is_err() {
            tracing::error!("history read failed: the reader thread has stopped");
            return self.error(id, "history is unavailable right now");
        }
        member.is_reading = true;
    }

    /// A `/history` read off the hub is done: its reply (or error) is queued, and what its
    /// member asked for since runs.
    fn apply_read(&mut self, done: ReadDone) {
        let id = done.member;
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        member.is_reading = false;
        match done.reply {
            Ok((bytes, lines)) => self.reply(id, bytes, lines),
            Err(err) => {
                tracing::error!("history read failed: {err}");
                self.error(id, "history is unavailable right now");
            }
        }
        self.release(id);
    }

    /// `/who`: the room's reply, kept until someone joins or leaves it or changes nick, so
    /// asking again and again costs the hub next to nothing, whatever the room's size.
    fn who(&mut self, id: MemberId, room: String) {
        let members = &self.members;
        let Some(found) = self.rooms.get_mut(&room) else {
            return self.error(id, &format!("there is no room {room}"));
        };
        let Some(member) = members.get(&id) else {
            return;
        };
        let who = found.who.get_or_insert_with(|| {
            let mut nicks: Vec<String> = found
                .members
                .iter()
                .filter_map(|m| members.get(m).map(|m| m.nick.clone()))
                .collect();
            // In the order of their identity (the key), so two spellings of a nick sort
            // alike; the nick itself only breaks ties, so the order is always the same.
            nicks.sort_by_cached_key(|n| (account::key(n), n.clone()));
            Box::new(Cached {
                event: [Event::Who { room, nicks }],
                renderings: Renderings::default(),
            })
        });
        let bytes = who.renderings.bytes_for(&who.event, member);
        self.reply(id, bytes, 1);
    }

    /// `/rooms`: every room with its count, kept until a room appears or goes or someone joins
    /// or leaves one, so asking again and again costs the hub next to nothing, however many
    /// rooms there are.
    fn list_rooms(&mut self, id: MemberId) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        let rooms = &self.rooms;
        let reply = self.rooms_reply.get_or_insert_with(|| {
            let rooms = rooms
                .iter()
                .map(|(name, room)| RoomInfo {
                    room: name.clone(),
                    members: room.members.len(),
                })
                .collect();
            Box::new(Cached {
                event: [Event::Rooms { rooms }],
                renderings: Renderings::default(),
            })
        });
        let bytes = reply.renderings.bytes_for(&reply.event, member);
        self.reply(id, bytes, 1);
    }

    /// Queues for `id` a reply of `lines` lines, weighed by [`reply_weight`].
    fn reply(&mut self, id: MemberId, bytes: Bytes, lines: usize) {
        let weight = reply_weight(&self.config, lines, bytes.len());
        if let Some(member) = self.members.get_mut(&id) {
            push(
                member,
                id,
                bytes,
                weight,
                self.config.outbox,
                &mut self.doomed,
            );
        }
    }

    /// Who hears of `id`'s comings and goings: `id`, and everyone sharing a room with it that
    /// is small enough to announce in (`announce_limit`), once each.
    fn audience(&self, id: MemberId) -> Vec<MemberId> {
        let mut seen = HashSet::from([id]);
        let mut out = vec![id];
        if let Some(member) = self.members.get(&id) {
            for room in &member.rooms {
                let Some(room) = self.rooms.get(room) else {
                    continue;
                };
                if room.members.len() > self.config.announce_limit {
                    continue;
                }
                for &peer in &room.members {
                    if seen.insert(peer) {
                        out.push(peer);
                    }
                }
            }
        }
        out
    }

    /// Disconnects `id`: tells its rooms, frees its nick, and closes its outbox, sending
    /// `last_word` past the queue first if given.
    fn remove(&mut self, id: MemberId, reason: Option<String>, last_word: Option<String>) {
        if !self.members.contains_key(&id) {
            return;
        }
        let audience = self.audience(id);
        let member = self.members.remove(&id).expect("checked");
        let word = last_word
            .as_ref()
            .map(|text| member.render(&Event::Error { text: text.clone() }));
        member.outbox.close(word);
        let key = account::key(&member.nick);
        if self.nicks.get(&key) == Some(&id) {
            self.nicks.remove(&key);
        }
        self.looks.remove(&account::look(&member.nick), id);
        for room in member.rooms.clone() {
            self.leave_room(id, &room);
        }
        let event = Event::Quit {
            nick: member.nick,
            reason: reason.or(last_word),
        };
        for peer in audience.into_iter().filter(|p| *p != id) {
            self.tell(peer, &event);
        }
    }

    /// Broadcasts a join or part to `room` if it is small enough, else tells only `id`.
    fn announce(&mut self, id: MemberId, room: &str, event: &Event) {
        let is_small = self
            .rooms
            .get(room)
            .is_some_and(|r| r.members.len() <= self.config.announce_limit);
        if is_small {
            self.broadcast(room, event);
        } else {
            self.tell(id, event);
        }
    }

    fn broadcast(&mut self, room: &str, event: &Event) {
        self.broadcast_run(room, std::slice::from_ref(event));
    }

    /// Sends a run of events to every member of `room`.
    fn broadcast_run(&mut self, room: &str, events: &[Event]) {
        let Some(found) = self.rooms.get(room) else {
            return;
        };
        let mut renderings = Renderings::default();
        for &id in &found.members {
            if let Some(member) = self.members.get_mut(&id) {
                let bytes = renderings.bytes_for(events, member);
                push(
                    member,
                    id,
                    bytes,
                    events.len(),
                    self.config.outbox,
                    &mut self.doomed,
                );
            }
        }
    }

    fn tell(&mut self, id: MemberId, event: &Event) {
        if let Some(member) = self.members.get_mut(&id) {
            let bytes = member.render(event);
            push(member, id, bytes, 1, self.config.outbox, &mut self.doomed);
        }
    }

    fn tell_state(&mut self, id: MemberId) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        if member.format == Format::Json {
            let state = Event::State {
                nick: member.nick.clone(),
                room: member.current.clone(),
                rooms: member.rooms.clone(),
            };
            self.tell(id, &state);
        }
    }

    /// Whether `id` was found too slow or gone in this round and is about to be disconnected.
    fn is_doomed(&self, id: MemberId) -> bool {
        self.doomed.iter().any(|(d, _)| *d == id)
    }

    /// Tells `id` of an error. One about a message (only messages run while the member's
    /// earlier ones are still being stored) waits behind those, as the requests after it do:
    /// it must not arrive before what was sent first. It goes first in line, as it answers
    /// the request just handled, which was first (a request is held only behind others).
    fn error(&mut self, id: MemberId, text: &str) {
        let event = Event::Error { text: text.into() };
        if let Some(member) = self.members.get_mut(&id)
            && member.in_flight > 0
            && member.held.len() < MAX_HELD_REQUESTS
        {
            member.held.push_front(Request::Notice(id, event));
            return;
        }
        self.tell(id, &event);
    }

    /// Disconnects the members found too slow or gone while fanning out; their departure is
    /// itself fanned out, which may doom others, so this repeats until nothing is left.
    fn settle(&mut self) {
        while let Some((id, reason)) = self.doomed.pop() {
            tracing::info!(member = id, "disconnecting: {reason}");
            self.remove(id, None, Some(reason));
        }
    }
}

/// The members holding a nick of each look-alike key ([`account::look`]): one a key, except
/// where registered look-alikes from before the rule are both logged in.
///
/// Keyed by a hash of the look, not the look itself, with the one holder inline: with thousands
/// of members that is 16 bytes a member in the table instead of a string and a list, each with
/// an allocation. Two looks with one hash share an entry, so whoever reads it compares the
/// looks themselves.
#[derive(Default)]
struct Looks {
    hasher: std::hash::RandomState,
    /// The first holder of each hash.
    first: HashMap<u64, MemberId>,
    /// The others, rarely any.
    more: HashMap<u64, Vec<MemberId>>,
}

impl Looks {
    fn add(&mut self, look: &str, id: MemberId) {
        let hash = self.hasher.hash_one(look);
        if let Some(first) = self.first.get(&hash)
            && *first != id
        {
            self.more.entry(hash).or_default().push(id);
        } else {
            self.first.insert(hash, id);
        }
    }

    fn remove(&mut self, look: &str, id: MemberId) {
        let hash = self.hasher.hash_one(look);
        let more = self.more.get_mut(&hash);
        if self.first.get(&hash) == Some(&id) {
            match more.and_then(Vec::pop) {
                Some(next) => self.first.insert(hash, next),
                None => self.first.remove(&hash),
            };
        } else if let Some(more) = more {
            more.retain(|holder| *holder != id);
        }
        if self.more.get(&hash).is_some_and(Vec::is_empty) {
            self.more.remove(&hash);
        }
    }

    /// The members whose look may be `look` (whose look has its hash).
    fn holders(&self, look: &str) -> impl Iterator<Item = MemberId> + '_ {
        let hash = self.hasher.hash_one(look);
        let more = self.more.get(&hash).into_iter().flatten().copied();
        self.first.get(&hash).copied().into_iter().chain(more)
    }
}

/// The accounts by look-alike key ([`account::look`] of the nick as registered). Registered
/// look-alikes from before the rule (or made by hand) are all kept, and logged: each may
/// still log in, and none can be taken with `/nick`.
fn account_looks(accounts: &HashMap<String, String>) -> HashMap<String, Vec<String>> {
    let mut looks: HashMap<String, Vec<String>> = HashMap::new();
    for (key, nick) in accounts {
        looks
            .entry(account::look(nick))
            .or_default()
            .push(key.clone());
    }
    for keys in looks.values_mut().filter(|keys| keys.len() > 1) {
        keys.sort();
        let nicks: Vec<&str> = keys.iter().map(|key| accounts[key].as_str()).collect();
        tracing::warn!(
            "registered nicks {} look alike; each may log in, but people may take one for another",
            nicks.join(", ")
        );
    }
    looks
}

/// Whether `key` (a nick key) is of the `guestN` form the server hands out.
fn is_guest_nick(key: &str) -> bool {
    key.strip_prefix("guest")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// What a reply to one member of `lines` lines and `bytes` bytes weighs in its outbox, in lines:
/// as many as it holds, or its bytes in lines of `--max-line` (at least [`MIN_REPLY_LINE`]) if
/// that is more. Counted as one, a member asking again and again for a `/who` of a big room or a
/// long `/history` without reading could make the server hold gigabytes for it. At most half the
/// outbox, so that one reply (a long `--history` replayed on joining) never cuts off a member
/// who reads.
fn reply_weight(config: &HubConfig, lines: usize, bytes: usize) -> usize {
    let line = config.max_line.max(MIN_REPLY_LINE);
    lines.max(bytes / line).min((config.outbox / 2).max(1))
}

/// Queues `bytes` (`lines` lines) for `member` without waiting; warns it at half full and
/// dooms it when full.
fn push(
    member: &mut Member,
    id: MemberId,
    bytes: Bytes,
    lines: usize,
    capacity: usize,
    doomed: &mut Vec<(MemberId, String)>,
) {
    if doomed.iter().any(|(d, _)| *d == id) {
        // Already found too slow: queue nothing more, or it could see a later message
        // without an earlier one (its outbox may drain meanwhile).
        return;
    }
    match member.outbox.push(bytes, lines, capacity) {
        Push::Queued(waiting) => {
            if !member.is_warned && waiting > capacity / 2 {
                member.is_warned = true;
                let warning = Event::Warning {
                    text: format!(
                        "you are falling behind ({waiting} lines waiting); read faster or be disconnected"
                    ),
                };
                // The warning may go past the limit: it is one line, and it matters.
                member.outbox.push(member.render(&warning), 1, usize::MAX);
            } else if member.is_warned && waiting < capacity / 4 {
                member.is_warned = false;
            }
        }
        Push::Full => doomed.push((
            id,
            format!("disconnected for not reading: {capacity} lines were waiting"),
        )),
        Push::Gone => doomed.push((id, "connection closed".into())),
    }
}

/// The failure-count key of an account tried from one address.
fn per_source(key: &str, source: Option<&str>) -> String {
    format!("{key} {}", source.unwrap_or("-"))
}

#[cfg(test)]
mod tests;
