//! What the server tells members, and how each member sees it.
//!
//! An [`Event`] is rendered once per output style: as a readable line for people on `nc`
//! (`[#dev] <ann> hello`, `* bob joined #dev`, `! error: …`) or as one JSON object per line for
//! socktalk's client and the browser. The JSON schema is documented in the README; the `type`
//! field names the event.

use std::fmt::Write as _;

use serde::Serialize;

/// A stored message: what history keeps and replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Row id in the database: increases with every message, so it orders history.
    pub id: i64,
    /// When the server received it, in milliseconds since the Unix epoch.
    pub ts: i64,
    /// `say`, `me` or `private`.
    pub kind: Kind,
    /// The room, for room messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Who sent it.
    pub nick: String,
    /// The recipient, for private messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The text.
    pub text: String,
}

/// The kinds of stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A plain message to a room.
    Say,
    /// An action (`/me`) in a room.
    Me,
    /// A private message.
    Private,
}

impl Kind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Say => "say",
            Kind::Me => "me",
            Kind::Private => "private",
        }
    }

    /// Parses a stored name.
    pub fn from_db(text: &str) -> Kind {
        match text {
            "me" => Kind::Me,
            "private" => Kind::Private,
            _ => Kind::Say,
        }
    }
}

/// A room and how many members it has, for `/rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomInfo {
    /// `#name`.
    pub room: String,
    /// Members present.
    pub members: usize,
}

/// Everything the server sends to a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// Sent once on connect.
    Welcome {
        /// The member's (guest) nick.
        nick: String,
        /// The room they start in.
        room: String,
        /// socktalk's version.
        version: &'static str,
        /// The longest line (a JSON request, in JSON mode) the server reads, in bytes
        /// (`--max-line`): a client can refuse a longer message before sending it.
        max_line: usize,
        /// The newest message id delivered so far. A client that saw a newer one before it
        /// reconnected is back on a server with another history (a restarted `--db :memory:`,
        /// a new database file): the ids it kept name other messages now.
        last_id: i64,
    },
    /// The member's state, sent when JSON mode starts and whenever it changes.
    State {
        /// Current nick.
        nick: String,
        /// Current room, if any.
        room: Option<String>,
        /// Every room the member is in.
        rooms: Vec<String>,
    },
    /// A room message or action.
    Message(Record),
    /// A private message (to its recipient and, as confirmation, its sender).
    Private(Record),
    /// Someone joined a room.
    Join {
        /// The room.
        room: String,
        /// Who.
        nick: String,
    },
    /// Someone left a room.
    Part {
        /// The room.
        room: String,
        /// Who.
        nick: String,
    },
    /// Someone changed nick.
    Nick {
        /// The old nick.
        old: String,
        /// The new nick.
        new: String,
    },
    /// Someone left the chat.
    Quit {
        /// Who.
        nick: String,
        /// Why, if they said (or the server decided).
        reason: Option<String>,
    },
    /// A room's earlier messages, oldest first.
    History {
        /// The room.
        room: String,
        /// The messages.
        messages: Vec<Record>,
    },
    /// Who is in a room.
    Who {
        /// The room.
        room: String,
        /// Their nicks, sorted by [`account::key`](super::account::key), ties by the nick.
        nicks: Vec<String>,
    },
    /// The rooms on this server.
    Rooms {
        /// Each room with its member count, sorted by name.
        rooms: Vec<RoomInfo>,
    },
    /// Information from the server.
    Info {
        /// The text; may span lines.
        text: String,
    },
    /// A warning: the member should change something (read faster, send slower).
    Warning {
        /// The text.
        text: String,
    },
    /// A request failed; the session goes on.
    Error {
        /// What and why.
        text: String,
    },
    /// `/register` succeeded: the nick held now is protected by the password given.
    Registered {
        /// The nick.
        nick: String,
    },
    /// `/login` succeeded (or `/register` did, which logs in too): the member holds `nick`.
    #[serde(rename = "logged_in")]
    LoggedIn {
        /// The nick.
        nick: String,
    },
    /// The member is no longer logged in as `nick`: another connection logged in as it, or
    /// the member changed nick.
    #[serde(rename = "logged_out")]
    LoggedOut {
        /// The nick.
        nick: String,
        /// Why.
        reason: String,
    },
    /// `/password` succeeded.
    #[serde(rename = "password_changed")]
    PasswordChanged {
        /// The account's nick.
        nick: String,
    },
    /// Private messages kept for the member while it was offline, oldest first, with their
    /// original times and senders (sent once at login).
    Mail {
        /// The messages (`private` records without `type`).
        messages: Vec<Record>,
    },
    /// The sender's confirmation of a private message to a registered nick that is offline:
    /// stored, and delivered when that nick logs in.
    Kept(Record),
}

impl Event {
    /// A one-line JSON object, without the newline.
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"type\":\"error\"}"))
    }

    /// Readable lines for `viewer` (which only matters for private messages), each ending in
    /// `\n`.
    pub fn to_text(&self, viewer: &str) -> String {
        let mut out = String::new();
        match self {
            Event::Welcome { nick, room, .. } => out.push_str(&format!(
                "* welcome to socktalk, {nick}! you are in {room}; type /help for commands\n"
            )),
            Event::State { nick, room, rooms } => out.push_str(&format!(
                "* you are {nick}, in {}{}\n",
                room.as_deref().unwrap_or("no room"),
                if rooms.len() > 1 {
                    format!(" (also {})", rooms.join(", "))
                } else {
                    String::new()
                }
            )),
            Event::Message(record) => push_record(&mut out, record, viewer, false),
            Event::Private(record) => push_record(&mut out, record, viewer, false),
            Event::Join { room, nick } => out.push_str(&format!("* {nick} joined {room}\n")),
            Event::Part { room, nick } => out.push_str(&format!("* {nick} left {room}\n")),
            Event::Nick { old, new } => {
                out.push_str(&format!("* {old} is now known as {new}\n"));
            }
            Event::Quit { nick, reason } => match reason {
                Some(reason) => {
                    out.push_str(&format!("* {nick} quit ("));
                    push_one_line(&mut out, reason);
                    out.push_str(")\n");
                }
                None => out.push_str(&format!("* {nick} quit\n")),
            },
            Event::History { room, messages } => {
                out.push_str(&format!(
                    "* {} earlier message{} in {room}:\n",
                    messages.len(),
                    if messages.len() == 1 { "" } else { "s" }
                ));
                for record in messages {
                    push_record(&mut out, record, viewer, true);
                }
            }
            Event::Who { room, nicks } => {
                out.push_str(&format!(
                    "* {room} ({}): {}\n",
                    nicks.len(),
                    nicks.join(", ")
                ));
            }
            Event::Rooms { rooms } => {
                let list: Vec<String> = rooms
                    .iter()
                    .map(|r| format!("{} ({})", r.room, r.members))
                    .collect();
                out.push_str(&format!("* rooms: {}\n", list.join(", ")));
            }
            Event::Info { text } => {
                for line in text.lines() {
                    out.push_str(&format!("* {line}\n"));
                }
            }
            Event::Warning { text } => out.push_str(&format!("! warning: {text}\n")),
            Event::Error { text } => out.push_str(&format!("! error: {text}\n")),
            Event::Registered { nick } => out.push_str(&format!(
                "* {nick} is registered to you now; /login {nick} PASSWORD claims it from any connection\n"
            )),
            Event::LoggedIn { nick } => {
                out.push_str(&format!("* you are logged in as {nick}\n"));
            }
            Event::LoggedOut { nick, reason } => {
                out.push_str(&format!("* you are no longer logged in as {nick}: {reason}\n"));
            }
            Event::PasswordChanged { nick } => {
                out.push_str(&format!("* the password of {nick} is changed\n"));
            }
            Event::Mail { messages } => {
                out.push_str(&format!(
                    "* {} message{} kept for you while you were away:\n",
                    messages.len(),
                    if messages.len() == 1 { "" } else { "s" }
                ));
                for record in messages {
                    push_record(&mut out, record, viewer, true);
                }
            }
            Event::Kept(record) => {
                push_record(&mut out, record, viewer, false);
                out.push_str(&format!(
                    "* {} is offline; your message is kept and delivered when they log in\n",
                    record.to.as_deref().unwrap_or("?")
                ));
            }
        }
        out
    }
}

/// `[#dev] <ann> hello`, `[#dev] * ann waves`, `[pm] <ann> psst`, `[pm to bob] <ann> psst`;
/// history lines carry their UTC time: `[#dev 2026-11-21 14:03] <ann> hello`.
///
/// Appends `record` as one line, built in `out` itself: joining a room replays its history
/// through here, a line per message, in the hub's one task.
fn push_record(out: &mut String, record: &Record, viewer: &str, with_time: bool) {
    out.push('[');
    match (&record.room, &record.to) {
        (Some(room), _) => out.push_str(room),
        (None, Some(to)) if record.nick == viewer && to != viewer => {
            out.push_str("pm to ");
            out.push_str(to);
        }
        (None, _) => out.push_str("pm"),
    }
    if with_time {
        out.push(' ');
        push_utc_minute(out, record.ts);
    }
    out.push_str("] ");
    match record.kind {
        Kind::Me => {
            out.push_str("* ");
            out.push_str(&record.nick);
            out.push(' ');
        }
        Kind::Say | Kind::Private => {
            out.push('<');
            out.push_str(&record.nick);
            out.push_str("> ");
        }
    }
    push_one_line(out, &record.text);
    out.push('\n');
}

/// Appends `text` with its control characters (other than tab), which could redraw a terminal
/// or fake a server line, shown as U+FFFD.
fn push_one_line(out: &mut String, text: &str) {
    out.push_str(&crate::codec::terminal_safe(text));
}

/// `YYYY-MM-DD HH:MM` in UTC for a millisecond timestamp.
pub fn utc_minute(ts_ms: i64) -> String {
    let mut out = String::with_capacity(16);
    push_utc_minute(&mut out, ts_ms);
    out
}

fn push_utc_minute(out: &mut String, ts_ms: i64) {
    let secs = ts_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60
    );
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after Howard Hinnant's
/// published `civil_from_days` algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: Kind, room: Option<&str>, to: Option<&str>) -> Record {
        Record {
            id: 7,
            ts: 1_763_733_780_000,
            kind,
            room: room.map(str::to_string),
            nick: "ann".into(),
            to: to.map(str::to_string),
            text: "hello".into(),
        }
    }

    #[test]
    fn text_lines_read_as_documented() {
        let say = Event::Message(record(Kind::Say, Some("#dev"), None));
        assert_eq!(say.to_text("bob"), "[#dev] <ann> hello\n");
        let me = Event::Message(record(Kind::Me, Some("#dev"), None));
        assert_eq!(me.to_text("bob"), "[#dev] * ann hello\n");
        let pm = Event::Private(record(Kind::Private, None, Some("bob")));
        assert_eq!(pm.to_text("bob"), "[pm] <ann> hello\n");
        assert_eq!(pm.to_text("ann"), "[pm to bob] <ann> hello\n");
        let join = Event::Join {
            room: "#dev".into(),
            nick: "bob".into(),
        };
        assert_eq!(join.to_text("x"), "* bob joined #dev\n");
        let error = Event::Error {
            text: "nick 'bob' is taken".into(),
        };
        assert_eq!(error.to_text("x"), "! error: nick 'bob' is taken\n");
        let info = Event::Info {
            text: "a\nb".into(),
        };
        assert_eq!(info.to_text("x"), "* a\n* b\n");
    }

    #[test]
    fn history_lines_carry_utc_time() {
        let history = Event::History {
            room: "#dev".into(),
            messages: vec![record(Kind::Say, Some("#dev"), None)],
        };
        assert_eq!(
            history.to_text("x"),
            "* 1 earlier message in #dev:\n[#dev 2025-11-21 14:03] <ann> hello\n"
        );
    }

    #[test]
    fn control_characters_cannot_fake_server_lines() {
        let mut rec = record(Kind::Say, Some("#dev"), None);
        rec.text = "hi\r! error: fake\x1b[2J".into();
        let text = Event::Message(rec).to_text("x");
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
        assert!(!text.contains('\x1b') && !text.contains('\r'));
    }

    #[test]
    fn json_has_a_type_tag() {
        let say = Event::Message(record(Kind::Say, Some("#dev"), None));
        let value: serde_json::Value = serde_json::from_str(&say.to_json()).unwrap();
        assert_eq!(value["type"], "message");
        assert_eq!(value["room"], "#dev");
        assert_eq!(value["nick"], "ann");
        assert_eq!(value["kind"], "say");
        assert_eq!(value["id"], 7);
        assert!(value.get("to").is_none());
        let err: serde_json::Value =
            serde_json::from_str(&Event::Error { text: "x".into() }.to_json()).unwrap();
        assert_eq!(err["type"], "error");
    }

    #[test]
    fn account_events_read_as_documented() {
        let logged_in = Event::LoggedIn { nick: "ann".into() };
        assert_eq!(logged_in.to_text("ann"), "* you are logged in as ann\n");
        let value: serde_json::Value = serde_json::from_str(&logged_in.to_json()).unwrap();
        assert_eq!(value["type"], "logged_in");
        assert_eq!(value["nick"], "ann");
        let out = Event::LoggedOut {
            nick: "ann".into(),
            reason: "logged in from another connection".into(),
        };
        assert_eq!(
            out.to_text("guest3"),
            "* you are no longer logged in as ann: logged in from another connection\n"
        );
        assert!(
            out.to_json()
                .starts_with(r#"{"type":"logged_out","nick":"ann","#)
        );
        let changed = Event::PasswordChanged { nick: "ann".into() };
        assert!(
            changed
                .to_json()
                .starts_with(r#"{"type":"password_changed""#)
        );
        let registered = Event::Registered { nick: "ann".into() };
        assert!(registered.to_json().starts_with(r#"{"type":"registered""#));

        let mut pm = record(Kind::Private, None, Some("bob"));
        pm.text = "are you there?".into();
        let mail = Event::Mail {
            messages: vec![pm.clone()],
        };
        assert_eq!(
            mail.to_text("bob"),
            "* 1 message kept for you while you were away:\n\
             [pm 2025-11-21 14:03] <ann> are you there?\n"
        );
        let value: serde_json::Value = serde_json::from_str(&mail.to_json()).unwrap();
        assert_eq!(value["type"], "mail");
        assert_eq!(value["messages"][0]["ts"], 1_763_733_780_000_i64);
        assert_eq!(value["messages"][0]["nick"], "ann");

        let kept = Event::Kept(pm);
        assert_eq!(
            kept.to_text("ann"),
            "[pm to bob] <ann> are you there?\n\
             * bob is offline; your message is kept and delivered when they log in\n"
        );
        let value: serde_json::Value = serde_json::from_str(&kept.to_json()).unwrap();
        assert_eq!(value["type"], "kept");
        assert_eq!(value["to"], "bob");
        assert_eq!(value["text"], "are you there?");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00");
        assert_eq!(utc_minute(951_782_400_000), "2000-02-29 00:00");
        assert_eq!(utc_minute(-60_000), "1969-12-31 23:59");
    }
}
