//! What a chat member asks for, parsed from a typed line or a JSON object.
//!
//! Parsing is pure (no I/O, no hub state) and unit-tested: the hub only ever sees a valid
//! [`Command`]. A malformed line is a [`CommandError`] whose text goes back to that member as
//! `! error: …`; the session carries on.
//!
//! # Line syntax (for `nc` users)
//!
//! A plain line is a message to your current room; `//text` sends `/text` literally.
//! Commands: `/nick NAME`, `/join #room`, `/part [#room]`, `/msg NICK text`, `/who [#room]`,
//! `/rooms`, `/history [N]`, `/me action`, `/encoding LABEL`, `/json`, `/quit [reason]`,
//! `/help`, and for accounts `/register PASSWORD`, `/login NICK PASSWORD`, `/password OLD NEW`.
//!
//! Passwords are [`Password`]s, whose `Debug` is redacted, and no error message ever repeats one.

use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

pub use super::account::Password;

/// Longest nick, in characters.
pub const MAX_NICK_CHARS: usize = 24;

/// Longest room name, in characters, `#` included.
pub const MAX_ROOM_CHARS: usize = 32;

/// A member's request, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A message to `room` (or the current room).
    Say {
        /// Target room; `None` is the current room.
        room: Option<String>,
        /// The message.
        text: String,
    },
    /// An action (`/me waves`) in `room` (or the current room).
    Me {
        /// Target room; `None` is the current room.
        room: Option<String>,
        /// The action.
        text: String,
    },
    /// Change nick.
    Nick(String),
    /// Join (or switch to) a room.
    Join(String),
    /// Leave a room (`None`: the current one).
    Part(Option<String>),
    /// A private message.
    Msg {
        /// The recipient's nick.
        to: String,
        /// The message.
        text: String,
    },
    /// List a room's members (`None`: the current room).
    Who(Option<String>),
    /// List the rooms.
    Rooms,
    /// Show a room's earlier messages.
    History {
        /// The room; `None` is the current room.
        room: Option<String>,
        /// How many; `None` is the server's default.
        limit: Option<usize>,
        /// Only messages older than this id (for "load older").
        before: Option<i64>,
    },
    /// Switch this connection's text encoding.
    Encoding(String),
    /// Switch this connection to JSON lines.
    Json,
    /// Leave the chat.
    Quit(Option<String>),
    /// List the commands.
    Help,
    /// Protect the nick held now with a password.
    Register(Password),
    /// Claim a registered nick.
    Login {
        /// The nick.
        nick: String,
        /// Its password.
        password: Password,
    },
    /// Change the password of the nick logged in as.
    Password {
        /// The current password.
        old: Password,
        /// The new one.
        new: Password,
    },
}

/// Why a line is not a valid command. The text is shown to the member after `! error: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(pub String);

fn err<T>(text: impl Into<String>) -> Result<T, CommandError> {
    Err(CommandError(text.into()))
}

/// Parses one typed line. `Ok(None)` for a blank line, which is ignored.
///
/// # Errors
/// [`CommandError`] for unknown commands, missing or extra arguments, and invalid names.
pub fn parse_line(line: &str) -> Result<Option<Command>, CommandError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(None);
    }
    // Spaces before a command do not make it a message: a mistyped ` /login ann secret` must
    // not be broadcast (and stored) with its password.
    let Some(rest) = line.trim_start().strip_prefix('/') else {
        return Ok(Some(Command::Say {
            room: None,
            text: line.to_string(),
        }));
    };
    if rest.starts_with('/') {
        return Ok(Some(Command::Say {
            room: None,
            text: rest.to_string(),
        }));
    }
    let (name, args) = match rest.split_once(char::is_whitespace) {
        Some((name, args)) => (name, args.trim()),
        None => (rest, ""),
    };
    let words: Vec<&str> = args.split_whitespace().collect();
    let command = match name.to_ascii_lowercase().as_str() {
        "nick" => match words[..] {
            [nick] => Command::Nick(valid_nick(nick)?),
            _ => return err("usage: /nick NAME"),
        },
        "join" | "j" => match words[..] {
            [room] => Command::Join(valid_room(room)?),
            _ => return err("usage: /join #room"),
        },
        "part" | "leave" => match words[..] {
            [] => Command::Part(None),
            [room] => Command::Part(Some(valid_room(room)?)),
            _ => return err("usage: /part [#room]"),
        },
        "msg" | "m" | "query" => {
            let Some((to, text)) = args.split_once(char::is_whitespace) else {
                return err("usage: /msg NICK text");
            };
            let text = text.trim();
            if text.is_empty() {
                return err("usage: /msg NICK text");
            }
            Command::Msg {
                to: valid_nick(to)?,
                text: text.to_string(),
            }
        }
        "who" | "names" => match words[..] {
            [] => Command::Who(None),
            [room] => Command::Who(Some(valid_room(room)?)),
            _ => return err("usage: /who [#room]"),
        },
        "rooms" | "list" => no_args(&words, "/rooms", Command::Rooms)?,
        "history" => match words[..] {
            [] => Command::History {
                room: None,
                limit: None,
                before: None,
            },
            [n] => match n.parse::<usize>() {
                Ok(n) if n > 0 => Command::History {
                    room: None,
                    limit: Some(n),
                    before: None,
                },
                _ => {
                    return err(format!(
                        "'{n}' is not a positive number; usage: /history [N]"
                    ));
                }
            },
            _ => return err("usage: /history [N]"),
        },
        "me" if args.is_empty() => return err("usage: /me action"),
        "me" => Command::Me {
            room: None,
            text: args.to_string(),
        },
        "encoding" => match words[..] {
            [label] => Command::Encoding(label.to_string()),
            _ => return err("usage: /encoding LABEL (utf-8, gbk, big5, …)"),
        },
        "json" => no_args(&words, "/json", Command::Json)?,
        "register" => match words[..] {
            [password] => Command::Register(Password::chosen(password)?),
            [] => return err("usage: /register PASSWORD"),
            _ => return err("usage: /register PASSWORD (one word, no spaces)"),
        },
        "login" | "identify" => match words[..] {
            [nick, password] => Command::Login {
                nick: valid_nick(nick)?,
                password: Password::given(password)?,
            },
            _ => return err("usage: /login NICK PASSWORD"),
        },
        "password" | "passwd" => match words[..] {
            [old, new] => Command::Password {
                old: Password::given(old)?,
                new: Password::chosen(new)?,
            },
            _ => return err("usage: /password OLD NEW"),
        },
        "quit" | "exit" => Command::Quit((!args.is_empty()).then(|| args.to_string())),
        "help" | "?" => Command::Help,
        "" => return err("empty command; type /help, or //text to send a line starting with /"),
        other => return err(format!("unknown command /{other} (type /help)")),
    };
    Ok(Some(command))
}

/// Commands whose arguments hold a password, with how many leading words (a nick) may show.
const SECRET_COMMANDS: [(&str, usize); 5] = [
    ("register", 0),
    ("login", 1),
    ("identify", 1),
    ("password", 0),
    ("passwd", 0),
];

/// A received line (typed or JSON) fit for a log: the passwords of `/register`, `/login` and
/// `/password` lines and of `register`, `login` and `password` requests are replaced by
/// `<redacted>`. Anything logging what members send must log it through this.
pub fn loggable(line: &str) -> std::borrow::Cow<'_, str> {
    const HIDDEN: &str = "<redacted>";
    let trimmed = line.trim_start();
    if let Some(rest) = trimmed.strip_prefix('/') {
        let mut words = rest.split_whitespace();
        let name = words.next().unwrap_or("").to_ascii_lowercase();
        if let Some((_, shown)) = SECRET_COMMANDS.iter().find(|(n, _)| *n == name) {
            let mut out = format!("/{name}");
            for word in words.by_ref().take(*shown) {
                out.push(' ');
                out.push_str(word);
            }
            if words.next().is_some() {
                out.push(' ');
                out.push_str(HIDDEN);
            }
            return out.into();
        }
        return line.into();
    }
    if !trimmed.starts_with('{') {
        return line.into();
    }
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_str(trimmed) else {
        // Not JSON the server would act on; it may still hold a password.
        let lower = trimmed.to_ascii_lowercase();
        let is_suspect = [
            "password",
            "\"old\"",
            "\"new\"",
            "/login",
            "/identify",
            "/register",
            "/passwd",
        ]
        .iter()
        .any(|mark| lower.contains(mark));
        return if is_suspect {
            format!("{{unparsed JSON, {} bytes, {HIDDEN}}}", line.len()).into()
        } else {
            line.into()
        };
    };
    let mut is_changed = false;
    for key in ["password", "old", "new"] {
        if let Some(value) = object.get_mut(key) {
            *value = serde_json::Value::from(HIDDEN);
            is_changed = true;
        }
    }
    if let Some(serde_json::Value::String(text)) = object.get_mut("text")
        && let std::borrow::Cow::Owned(safe) = loggable(text)
    {
        *text = safe;
        is_changed = true;
    }
    if is_changed {
        serde_json::Value::Object(object).to_string().into()
    } else {
        line.into()
    }
}

fn no_args(words: &[&str], name: &str, command: Command) -> Result<Command, CommandError> {
    if words.is_empty() {
        Ok(command)
    } else {
        err(format!("{name} takes no arguments"))
    }
}

/// Checks a nick: 1–24 letters (any script), digits, `_` or `-`, starting with a letter or `_`.
/// The nick is first put in Unicode normal form C, and that is what is checked and returned: `e`
/// followed by a combining acute accent (U+0301) is `é`, one letter, so both spellings are one
/// nick and it is always shown composed.
///
/// Some letters have no composed form in NFC (U+095B `ज़` becomes `ज` and a nukta), so a
/// combining mark may follow a letter or digit, and the length is that of the shorter of the two
/// spellings: every nick valid as typed stays valid in NFC.
///
/// # Errors
/// [`CommandError`] saying what is wrong.
pub fn valid_nick(typed: &str) -> Result<String, CommandError> {
    let normal: String = typed.nfc().collect();
    let nick = normal.as_str();
    let count = nick.chars().count().min(typed.chars().count());
    if count == 0 || count > MAX_NICK_CHARS {
        return err(format!(
            "nick '{nick}' must be 1 to {MAX_NICK_CHARS} characters"
        ));
    }
    let first_ok = nick
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_');
    let mut after_alphanumeric = false;
    let rest_ok = nick.chars().all(|c| {
        let ok = c.is_alphanumeric()
            || c == '_'
            || c == '-'
            || (after_alphanumeric && is_combining_mark(c));
        after_alphanumeric = c.is_alphanumeric() || (after_alphanumeric && is_combining_mark(c));
        ok
    });
    if !first_ok || !rest_ok {
        return err(format!(
            "nick '{nick}' may use letters, digits, _ and -, and must start with a letter or _"
        ));
    }
    Ok(normal)
}

/// Checks and normalizes a room name: `dev` and `#Dev` both become `#dev`.
///
/// Lower-casing goes character by character, one character for one (`İ` becomes `i`), so the
/// normal form has as many characters as the name and is itself a valid, unchanged room name.
///
/// # Errors
/// [`CommandError`] saying what is wrong.
pub fn valid_room(room: &str) -> Result<String, CommandError> {
    let name = room.strip_prefix('#').unwrap_or(room);
    let count = name.chars().count() + 1;
    if name.is_empty() || count > MAX_ROOM_CHARS {
        return err(format!(
            "room '{room}' must be # and 1 to {} characters",
            MAX_ROOM_CHARS - 1
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return err(format!(
            "room '{room}' may use letters, digits, _ and - after the #"
        ));
    }
    let lower = name.chars().map(|c| c.to_lowercase().next().unwrap_or(c));
    Ok(std::iter::once('#').chain(lower).collect())
}

/// A request in JSON mode: one object per line, `type` naming it.
///
/// `{"type":"line","text":"/join #dev"}` carries a typed line (command or message) as is, so a
/// client can pass `/commands` through; the other types are the structured forms.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum JsonRequest {
    Line {
        text: String,
    },
    Say {
        text: String,
        #[serde(default)]
        room: Option<String>,
    },
    Me {
        text: String,
        #[serde(default)]
        room: Option<String>,
    },
    Nick {
        nick: String,
    },
    Join {
        room: String,
    },
    Part {
        #[serde(default)]
        room: Option<String>,
    },
    #[serde(alias = "msg")]
    Private {
        to: String,
        text: String,
    },
    Who {
        #[serde(default)]
        room: Option<String>,
    },
    Rooms {},
    History {
        #[serde(default)]
        room: Option<String>,
        #[serde(default)]
        limit: Option<usize>,
        #[serde(default)]
        before: Option<i64>,
    },
    Quit {
        #[serde(default)]
        reason: Option<String>,
    },
    Help {},
    // Passwords are read as any JSON value and checked afterwards, so that a wrong type is
    // refused without serde quoting the value in its error.
    Register {
        password: serde_json::Value,
    },
    Login {
        nick: String,
        password: serde_json::Value,
    },
    Password {
        old: serde_json::Value,
        new: serde_json::Value,
    },
}

/// A password field of a JSON request, checked with `check` (given or chosen rules).
fn json_password(
    value: &serde_json::Value,
    check: fn(&str) -> Result<Password, CommandError>,
) -> Result<Password, CommandError> {
    match value {
        serde_json::Value::String(text) => check(text),
        _ => err("a password must be a JSON string"),
    }
}

/// Parses one JSON-mode line. `Ok(None)` for a blank line or an empty message.
///
/// # Errors
/// [`CommandError`] for invalid JSON, unknown types, missing fields or invalid names.
pub fn parse_json(line: &str) -> Result<Option<Command>, CommandError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    // A byte-order mark is not part of the request (some tools write one).
    let line = line.strip_prefix('\u{feff}').unwrap_or(line);
    let bad = |why: String| CommandError(format!("bad JSON request: {why}"));
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
    if !value.is_object() {
        return Err(bad(
            r#"expected an object, such as {"type":"say","text":"hi"}"#.into(),
        ));
    }
    let request: JsonRequest = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    let room = |room: Option<String>| room.as_deref().map(valid_room).transpose();
    let not_blank = |text: String| (!text.trim().is_empty()).then_some(text);
    Ok(match request {
        JsonRequest::Line { text } => return parse_line(&text),
        JsonRequest::Say { text, room: r } => not_blank(text)
            .map(|text| Command::Say { room: None, text })
            .map(|c| with_room(c, room(r)))
            .transpose()?,
        JsonRequest::Me { text, room: r } => not_blank(text)
            .map(|text| Command::Me { room: None, text })
            .map(|c| with_room(c, room(r)))
            .transpose()?,
        JsonRequest::Nick { nick } => Some(Command::Nick(valid_nick(&nick)?)),
        JsonRequest::Join { room: r } => Some(Command::Join(valid_room(&r)?)),
        JsonRequest::Part { room: r } => Some(Command::Part(room(r)?)),
        JsonRequest::Private { to, text } => not_blank(text)
            .map(|text| -> Result<_, CommandError> {
                Ok(Command::Msg {
                    to: valid_nick(&to)?,
                    text,
                })
            })
            .transpose()?,
        JsonRequest::Who { room: r } => Some(Command::Who(room(r)?)),
        JsonRequest::Rooms {} => Some(Command::Rooms),
        JsonRequest::History { limit: Some(0), .. } => {
            return Err(bad("history's limit must be a positive number".into()));
        }
        JsonRequest::History {
            room: r,
            limit,
            before,
        } => Some(Command::History {
            room: room(r)?,
            limit,
            before,
        }),
        // A blank reason is none, as after a typed `/quit`: not `* ann quit ()`.
        JsonRequest::Quit { reason } => Some(Command::Quit(reason.and_then(not_blank))),
        JsonRequest::Help {} => Some(Command::Help),
        JsonRequest::Register { password } => Some(Command::Register(json_password(
            &password,
            Password::chosen,
        )?)),
        JsonRequest::Login { nick, password } => Some(Command::Login {
            nick: valid_nick(&nick)?,
            password: json_password(&password, Password::given)?,
        }),
        JsonRequest::Password { old, new } => Some(Command::Password {
            old: json_password(&old, Password::given)?,
            new: json_password(&new, Password::chosen)?,
        }),
    })
}

/// Sets the target room of a `Say`/`Me` parsed from JSON.
fn with_room(
    command: Command,
    room: Result<Option<String>, CommandError>,
) -> Result<Command, CommandError> {
    let room = room?;
    Ok(match command {
        Command::Say { text, .. } => Command::Say { room, text },
        Command::Me { text, .. } => Command::Me { room, text },
        other => other,
    })
}

/// The `/help` text, one command per line.
pub const HELP: &str = "\
commands:
  text                  send text to your current room (//text sends a line starting with /)
  /nick NAME            change your nick
  /join #room           join a room (created on first join) and make it current
  /part [#room]         leave the current room, or the one named
  /msg NICK text        private message: only NICK sees it (kept for a registered NICK offline)
  /me action            an action: * nick waves
  /who [#room]          who is in the room
  /rooms                list the rooms
  /history [N]          the room's last N messages
  /encoding LABEL       your text encoding (utf-8, gbk, big5, …)
  /json                 switch this connection to JSON lines
  /register PASSWORD    protect your current nick with a password
  /login NICK PASSWORD  claim a registered nick; mail kept for it is delivered
  /password OLD NEW     change the password of the nick you are logged in as
  /quit [reason]        leave";

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse_line(line).unwrap().unwrap()
    }

    fn bad(line: &str) -> String {
        parse_line(line).unwrap_err().0
    }

    #[test]
    fn plain_lines_are_messages() {
        assert_eq!(
            ok("hello world"),
            Command::Say {
                room: None,
                text: "hello world".into()
            }
        );
        assert_eq!(
            ok("//not a command"),
            Command::Say {
                room: None,
                text: "/not a command".into()
            }
        );
        assert_eq!(parse_line("").unwrap(), None);
        assert_eq!(parse_line("   \r\n").unwrap(), None);
        // Leading spaces are kept in a message, but do not turn a command into one.
        assert_eq!(
            ok("  indented"),
            Command::Say {
                room: None,
                text: "  indented".into()
            }
        );
        assert!(matches!(
            ok("  /login ann secret-pw"),
            Command::Login { .. }
        ));
    }

    #[test]
    fn every_command_parses() {
        assert_eq!(ok("/nick ann"), Command::Nick("ann".into()));
        assert_eq!(ok("/NICK 小明"), Command::Nick("小明".into()));
        assert_eq!(ok("/join #Dev"), Command::Join("#dev".into()));
        assert_eq!(ok("/join dev"), Command::Join("#dev".into()));
        assert_eq!(ok("/part"), Command::Part(None));
        assert_eq!(ok("/part #dev"), Command::Part(Some("#dev".into())));
        assert_eq!(
            ok("/msg bob  psst, over here "),
            Command::Msg {
                to: "bob".into(),
                text: "psst, over here".into()
            }
        );
        assert_eq!(ok("/who"), Command::Who(None));
        assert_eq!(ok("/who #x"), Command::Who(Some("#x".into())));
        assert_eq!(ok("/rooms"), Command::Rooms);
        assert_eq!(
            ok("/history 50"),
            Command::History {
                room: None,
                limit: Some(50),
                before: None
            }
        );
        assert_eq!(
            ok("/me waves"),
            Command::Me {
                room: None,
                text: "waves".into()
            }
        );
        assert_eq!(ok("/encoding gbk"), Command::Encoding("gbk".into()));
        assert_eq!(ok("/json"), Command::Json);
        assert_eq!(ok("/quit"), Command::Quit(None));
        assert_eq!(
            ok("/quit gone fishing"),
            Command::Quit(Some("gone fishing".into()))
        );
        assert_eq!(ok("/help"), Command::Help);
    }

    #[test]
    fn bad_commands_say_why() {
        assert!(bad("/frobnicate").contains("unknown command /frobnicate"));
        assert!(bad("/nick").contains("usage: /nick"));
        assert!(bad("/nick a b").contains("usage: /nick"));
        assert!(bad("/nick 9lives").contains("must start with a letter"));
        assert!(bad("/nick a!b").contains("may use letters"));
        assert!(bad(&format!("/nick {}", "x".repeat(25))).contains("1 to 24"));
        assert!(bad("/join").contains("usage: /join"));
        assert!(bad("/join #").contains("must be #"));
        assert!(bad("/join #a b").contains("usage: /join"));
        assert!(bad("/join #a!").contains("may use letters"));
        assert!(bad("/msg bob").contains("usage: /msg"));
        assert!(bad("/msg bob   ").contains("usage: /msg"));
        assert!(bad("/history zero").contains("not a positive number"));
        assert!(bad("/history 0").contains("not a positive number"));
        assert!(bad("/me").contains("usage: /me"));
        assert!(bad("/rooms now").contains("takes no arguments"));
        assert!(bad("/").contains("empty command"));
    }

    #[test]
    fn room_names_lower_case_one_character_for_one() {
        // Found by tests/properties.rs: `İ` lower-cases to `i` plus U+0307 COMBINING DOT, so
        // "#İ" was accepted as "#i\u{307}", which is no valid room name itself, and 31 of them
        // made a 63-character room.
        assert_eq!(valid_room("İ"), Ok("#i".into()));
        let long = format!("#{}", "İ".repeat(MAX_ROOM_CHARS - 1));
        let normal = valid_room(&long).unwrap();
        assert_eq!(normal.chars().count(), MAX_ROOM_CHARS);
        assert_eq!(valid_room(&normal), Ok(normal.clone()));
        assert_eq!(ok("/join #ΣΟΦΙΑ"), Command::Join("#σοφια".into()));
    }

    #[test]
    fn nicks_are_taken_in_normal_form_c() {
        // e + U+0301 COMBINING ACUTE was refused (the accent is no letter); it is é.
        assert_eq!(valid_nick("Re\u{301}my"), Ok("R\u{e9}my".into()));
        assert_eq!(ok("/nick Re\u{301}my"), Command::Nick("R\u{e9}my".into()));
        assert_eq!(
            ok("/msg Re\u{301}my hi"),
            Command::Msg {
                to: "R\u{e9}my".into(),
                text: "hi".into()
            }
        );
        // The limit counts the composed letters: 24 of e + accent is 24 characters.
        assert!(valid_nick(&"e\u{301}".repeat(MAX_NICK_CHARS)).is_ok());
        assert!(valid_nick(&"e\u{301}".repeat(MAX_NICK_CHARS + 1)).is_err());
        assert_eq!(valid_nick("王小明"), Ok("王小明".into()));
    }

    #[test]
    fn letters_that_nfc_splits_stay_valid_nicks() {
        // U+095B is a letter; NFC makes it ज + U+093C NUKTA, a mark: it was a valid nick before
        // nicks went to NFC, and must stay one (a registered account may hold it).
        let zara = "\u{95B}\u{93E}\u{930}\u{93E}";
        assert_eq!(
            valid_nick(zara),
            Ok("\u{91C}\u{93C}\u{93E}\u{930}\u{93E}".into())
        );
        // U+FB2C is one character, three in NFC: 24 of them were, and stay, within the limit.
        assert!(valid_nick(&"\u{FB2C}".repeat(MAX_NICK_CHARS)).is_ok());
        // A mark still cannot start a nick or follow `_` or `-`.
        assert!(valid_nick("\u{301}ann").is_err());
        assert!(valid_nick("_\u{301}").is_err());
        assert!(valid_nick("a-\u{301}").is_err());
    }

    #[test]
    fn json_requests_map_to_commands() {
        let one = |json: &str| parse_json(json).unwrap().unwrap();
        assert_eq!(
            one(r##"{"type":"say","text":"hi","room":"#Dev"}"##),
            Command::Say {
                room: Some("#dev".into()),
                text: "hi".into()
            }
        );
        assert_eq!(
            one(r#"{"type":"line","text":"/join x"}"#),
            Command::Join("#x".into())
        );
        assert_eq!(
            one(r#"{"type":"private","to":"bob","text":"psst"}"#),
            Command::Msg {
                to: "bob".into(),
                text: "psst".into()
            }
        );
        assert_eq!(
            one(r#"{"type":"history","limit":5,"before":100}"#),
            Command::History {
                room: None,
                limit: Some(5),
                before: Some(100)
            }
        );
        assert_eq!(one(r#"{"type":"rooms"}"#), Command::Rooms);
        assert_eq!(one(r#"{"type":"quit","reason":" "}"#), Command::Quit(None));
        assert_eq!(
            one(r#"{"type":"quit","reason":"bye"}"#),
            Command::Quit(Some("bye".into()))
        );
        assert_eq!(parse_json(r#"{"type":"say","text":"  "}"#).unwrap(), None);
    }

    #[test]
    fn account_commands_parse() {
        let pw = |text: &str| Password::given(text).unwrap();
        assert_eq!(
            ok("/register hunter2-long"),
            Command::Register(pw("hunter2-long"))
        );
        assert_eq!(
            ok("/login Ann hunter2-long"),
            Command::Login {
                nick: "Ann".into(),
                password: pw("hunter2-long")
            }
        );
        assert_eq!(ok("/identify ann x"), ok("/login ann x"));
        assert_eq!(
            ok("/password old-one new-password"),
            Command::Password {
                old: pw("old-one"),
                new: pw("new-password")
            }
        );
        let one = |json: &str| parse_json(json).unwrap().unwrap();
        assert_eq!(
            one(r#"{"type":"register","password":"hunter2-long"}"#),
            Command::Register(pw("hunter2-long"))
        );
        assert_eq!(
            one(r#"{"type":"login","nick":"ann","password":"x y"}"#),
            Command::Login {
                nick: "ann".into(),
                password: pw("x y")
            }
        );
        assert_eq!(
            one(r#"{"type":"password","old":"a","new":"brand-new-one"}"#),
            Command::Password {
                old: pw("a"),
                new: pw("brand-new-one")
            }
        );
        assert_eq!(
            one(r#"{"type":"line","text":"/login ann secret"}"#),
            ok("/login ann secret")
        );
    }

    #[test]
    fn bad_account_commands_say_why_and_never_echo_the_password() {
        let long = format!("/register {}", "p".repeat(2000));
        for (line, expected) in [
            ("/register", "usage: /register PASSWORD"),
            ("/register two words", "one word"),
            ("/register short", "at least 8 characters"),
            (long.as_str(), "longer than 1024 bytes"),
            ("/login", "usage: /login NICK PASSWORD"),
            ("/login ann", "usage: /login NICK PASSWORD"),
            ("/login ann sec ret", "usage: /login NICK PASSWORD"),
            ("/login 9ann secret", "must start with a letter"),
            ("/password", "usage: /password OLD NEW"),
            ("/password only-one", "usage: /password OLD NEW"),
            ("/password old-secret tiny", "at least 8 characters"),
        ] {
            let text = bad(line);
            assert!(text.contains(expected), "{line}: {text}");
            assert!(!text.contains("secret") && !text.contains("ppp"), "{text}");
        }
        for (json, expected) in [
            (r#"{"type":"register"}"#, "missing field `password`"),
            (r#"{"type":"register","password":""}"#, "empty"),
            (r#"{"type":"register","password":12345678}"#, "JSON string"),
            (
                r#"{"type":"login","nick":"ann","password":98765432}"#,
                "JSON string",
            ),
            (r#"{"type":"login","password":"x"}"#, "missing field `nick`"),
            (r#"{"type":"password","old":"x"}"#, "missing field `new`"),
            (
                r#"{"type":"password","old":"x","new":"tiny"}"#,
                "at least 8",
            ),
        ] {
            let text = parse_json(json).unwrap_err().0;
            assert!(text.contains(expected), "{json}: {text}");
            assert!(
                !text.contains("12345678") && !text.contains("98765432"),
                "{text}"
            );
        }
    }

    #[test]
    fn loggable_lines_hide_passwords() {
        assert_eq!(loggable("/login ann hunter2"), "/login ann <redacted>");
        assert_eq!(
            loggable("  /LOGIN ann   hunter2 x"),
            "/login ann <redacted>"
        );
        assert_eq!(loggable("/register hunter2"), "/register <redacted>");
        assert_eq!(loggable("/password old new"), "/password <redacted>");
        assert_eq!(loggable("/login"), "/login");
        assert_eq!(loggable("/msg bob hi"), "/msg bob hi");
        assert_eq!(loggable("hello"), "hello");
        let json = loggable(r#"{"type":"login","nick":"ann","password":"hunter2"}"#);
        assert!(!json.contains("hunter2") && json.contains("ann"), "{json}");
        let json = loggable(r#"{"type":"password","old":"hunter2","new":"hunter3"}"#);
        assert!(!json.contains("hunter"), "{json}");
        let json = loggable(r#"{"type":"line","text":"/register hunter2"}"#);
        assert!(
            !json.contains("hunter2") && json.contains("/register"),
            "{json}"
        );
        let broken = loggable(r#"{"type":"login","password":"hunter2""#);
        assert!(!broken.contains("hunter2"), "{broken}");
        assert_eq!(
            loggable(r#"{"type":"say","text":"hi"}"#),
            r#"{"type":"say","text":"hi"}"#
        );
    }

    #[test]
    fn commands_print_without_their_passwords() {
        let shown = format!(
            "{:?} {:?}",
            ok("/login ann hunter2-long"),
            ok("/password hunter2-long other-secret")
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("other-secret"),
            "{shown}"
        );
    }

    #[test]
    fn bad_json_says_why() {
        for (json, expected) in [
            ("{not json", "bad JSON"),
            (r#"{"type":"teleport"}"#, "unknown variant"),
            (r#"{"type":"say"}"#, "missing field `text`"),
            (r#"{"type":"nick","nick":"1x"}"#, "must start with a letter"),
            (r#"{"type":"say","text":"x","extra":1}"#, "unknown field"),
            (r#"[1,2]"#, "expected an object, such as"),
            (r#""say""#, "expected an object, such as"),
            (r#"{"text":"hi"}"#, "missing field `type`"),
            (
                r#"{"type":"history","limit":0}"#,
                "must be a positive number",
            ),
        ] {
            let text = parse_json(json).unwrap_err().0;
            assert!(text.contains(expected), "{json}: {text}");
            assert!(!text.contains("JsonRequest"), "{json}: {text}");
        }
        // A byte-order mark before the request is not an error.
        assert!(matches!(
            parse_json("\u{feff}{\"type\":\"rooms\"}"),
            Ok(Some(Command::Rooms))
        ));
    }
}
