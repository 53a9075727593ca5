//! `socktalk chat`: a terminal client for the chat server, on its JSON mode.
//!
//! It switches the connection to JSON (`/json`), sets the nick, asks for the current room's
//! history again (so it arrives with times), and then runs both directions at once: each typed
//! line goes out (`/commands` passed through as typed), each event is printed as a readable,
//! coloured line. It exits on `/quit`, Ctrl-D, or the server closing.

use std::io::Write;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;

use super::event::utc_minute;
use super::session::far_future;
use crate::codec::{FrameCodec, Framing, terminal_safe};
use crate::error::Result;
use crate::limits::{GREETING_TIMEOUT, MAX_SERVER_LINE};
use crate::talk::stdin_lines;

/// Settings of the terminal client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The nick to ask for.
    pub nick: Option<String>,
    /// Colour the output with ANSI escapes.
    pub is_colored: bool,
    /// Send an empty line after this long without a request, so that a member who only reads
    /// is not idle for the server (zero: never).
    pub keepalive: Duration,
}

/// Chats over `stream` until the user quits or the server closes.
///
/// # Errors
/// I/O errors on the connection.
pub async fn run<S>(stream: S, config: &ClientConfig) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (reader, mut writer) = tokio::io::split(stream);
    let mut hello = String::from("/json\n");
    if let Some(nick) = &config.nick {
        hello.push_str(&json!({"type": "nick", "nick": nick}).to_string());
        hello.push('\n');
    }
    hello.push_str("{\"type\":\"history\"}\n");
    writer.write_all(hello.as_bytes()).await?;

    let mut lines = stdin_lines();
    let mut frames = FramedRead::new(reader, FrameCodec::new(Framing::Line, MAX_SERVER_LINE));
    let mut view = View::new(config.is_colored);
    let mut is_typing = true;
    let greeting_deadline = tokio::time::sleep(GREETING_TIMEOUT);
    tokio::pin!(greeting_deadline);
    // The server closes a connection that sends no line for --idle-timeout; an empty line is
    // one, and it asks for nothing.
    let keepalive = tokio::time::sleep_until(far_future(config.keepalive));
    tokio::pin!(keepalive);
    loop {
        tokio::select! {
            () = &mut greeting_deadline, if !view.is_json => {
                let reason = format!(
                    "no answer from a chat server within {GREETING_TIMEOUT:?} (is it `socktalk serve`?)"
                );
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, reason).into());
            }
            line = lines.recv(), if is_typing => {
                let request = match line {
                    None => {
                        is_typing = false;
                        json!({"type": "quit"})
                    }
                    Some(line) if line.trim().is_empty() => continue,
                    Some(line) => {
                        is_typing = !is_quit(&line);
                        // As the server reads typed lines: blanks before a `/` still make a
                        // command (sent as `say`, ` /login ann pw` would go to the room).
                        if line.trim_start().starts_with('/') {
                            json!({"type": "line", "text": line})
                        } else {
                            json!({"type": "say", "text": line})
                        }
                    }
                };
                let mut wire = request.to_string();
                wire.push('\n');
                if writer.write_all(wire.as_bytes()).await.is_err() {
                    is_typing = false;
                }
                keepalive.as_mut().reset(far_future(config.keepalive));
            }
            () = &mut keepalive, if is_typing => {
                if writer.write_all(b"\n").await.is_err() {
                    is_typing = false;
                }
                keepalive.as_mut().reset(far_future(config.keepalive));
            }
            frame = frames.next() => match frame {
                Some(Ok(line)) => view.show(&String::from_utf8_lossy(&line)),
                Some(Err(err)) => {
                    view.status(&format!("connection error: {err}"));
                    break;
                }
                None => break,
            },
        }
    }
    view.status("disconnected");
    if view.is_json {
        return Ok(());
    }
    // Closed before the chat began: refused at the door (said in one text line), or not a
    // chat server at all.
    let reason = view.refusal.take().unwrap_or_else(|| {
        "the server closed the connection before the chat began (is it `socktalk serve`?)".into()
    });
    Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, reason).into())
}

fn is_quit(line: &str) -> bool {
    let word = line.split_whitespace().next().unwrap_or("");
    word.eq_ignore_ascii_case("/quit") || word.eq_ignore_ascii_case("/exit")
}

/// Turns the server's JSON events into readable terminal lines.
struct View {
    is_colored: bool,
    /// Lines before JSON mode starts (the server's first `state` event) are the text-mode
    /// greeting, already re-sent as JSON, or not from a chat server at all.
    is_json: bool,
    /// The line a server refusing the connection sends before closing it.
    refusal: Option<String>,
    nick: String,
    room: Option<String>,
}

const DIM: &str = "2";
const RED: &str = "31";
const GREEN: &str = "32";
const YELLOW: &str = "33";
const MAGENTA: &str = "35";
const CYAN: &str = "36";
const NICK_COLORS: [&str; 6] = ["31", "32", "33", "34", "35", "36"];

impl View {
    fn new(is_colored: bool) -> Self {
        Self {
            is_colored,
            is_json: false,
            refusal: None,
            nick: String::new(),
            room: None,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.is_colored {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn nick(&self, nick: &str) -> String {
        let hash = nick
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
        self.paint(NICK_COLORS[hash % NICK_COLORS.len()], nick)
    }

    fn print(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    fn status(&self, text: &str) {
        self.print(&self.paint(DIM, &format!("* {text}")));
    }

    fn show(&mut self, line: &str) {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            if self.is_json {
                self.print(&terminal_safe(line));
            } else if line.starts_with("refused:") {
                self.refusal = Some(terminal_safe(line).into_owned());
            }
            return;
        };
        if !self.is_json {
            // JSON mode starts with the server's `state` event; anything before it is not an
            // event of ours (an echo server sends our own requests back).
            if event.get("type").and_then(Value::as_str) != Some("state") {
                return;
            }
            self.is_json = true;
        }
        let s = |key: &str| text(&event, key);
        match s("type").as_str() {
            "message" | "private" => {
                let rendered = self.record(&event, false);
                self.print(&rendered);
            }
            "history" => {
                let messages = event.get("messages").and_then(Value::as_array);
                let messages = messages.map_or(&[][..], Vec::as_slice);
                if messages.is_empty() {
                    return;
                }
                self.status(&format!("earlier in {}:", s("room")));
                for message in messages {
                    let rendered = self.record(message, true);
                    self.print(&rendered);
                }
                self.status(&format!("— end of history in {} —", s("room")));
            }
            "join" => self.status(&format!("{} joined {}", s("nick"), s("room"))),
            "part" => self.status(&format!("{} left {}", s("nick"), s("room"))),
            "nick" => self.status(&format!("{} is now known as {}", s("old"), s("new"))),
            "quit" => match event.get("reason").and_then(Value::as_str) {
                Some(_) => self.status(&format!("{} quit ({})", s("nick"), s("reason"))),
                None => self.status(&format!("{} quit", s("nick"))),
            },
            "who" => {
                let nicks: Vec<String> = strings(&event, "nicks")
                    .iter()
                    .map(|n| self.nick(n))
                    .collect();
                self.status(&format!(
                    "{} ({}): {}",
                    s("room"),
                    nicks.len(),
                    nicks.join(", ")
                ));
            }
            "rooms" => {
                let rooms: Vec<String> = event
                    .get("rooms")
                    .and_then(Value::as_array)
                    .map_or(&[][..], Vec::as_slice)
                    .iter()
                    .map(|r| {
                        let name =
                            terminal_safe(r.get("room").and_then(Value::as_str).unwrap_or("?"));
                        let count = r.get("members").and_then(Value::as_u64).unwrap_or(0);
                        format!("{name} ({count})")
                    })
                    .collect();
                self.status(&format!("rooms: {}", rooms.join(", ")));
            }
            "state" => {
                let nick = s("nick");
                let room = event
                    .get("room")
                    .and_then(Value::as_str)
                    .map(|room| terminal_safe(room).into_owned());
                if nick != self.nick || room != self.room {
                    let place = room.as_deref().unwrap_or("no room");
                    self.print(
                        &self.paint(GREEN, &format!("* you are {nick}, talking in {place}")),
                    );
                    self.nick = nick;
                    self.room = room;
                }
            }
            "welcome" => self.status(&format!("welcome, {}", s("nick"))),
            "info" => {
                // The one event of several lines (/help).
                let raw = event.get("text").and_then(Value::as_str).unwrap_or("");
                for text_line in raw.lines() {
                    self.status(&terminal_safe(text_line));
                }
            }
            "warning" => self.print(&self.paint(YELLOW, &format!("! warning: {}", s("text")))),
            "registered" => self.status(&format!(
                "{0} is registered to you now; /login {0} PASSWORD claims it from any connection",
                s("nick")
            )),
            "logged_in" => {
                self.print(&self.paint(GREEN, &format!("* you are logged in as {}", s("nick"))));
            }
            "logged_out" => self.status(&format!(
                "you are no longer logged in as {}: {}",
                s("nick"),
                s("reason")
            )),
            "password_changed" => {
                self.status(&format!("the password of {} is changed", s("nick")));
            }
            "mail" => {
                let messages = event.get("messages").and_then(Value::as_array);
                let messages = messages.map_or(&[][..], Vec::as_slice);
                self.status(&format!(
                    "{} message{} kept for you while you were away:",
                    messages.len(),
                    if messages.len() == 1 { "" } else { "s" }
                ));
                for message in messages {
                    let rendered = self.record(message, true);
                    self.print(&rendered);
                }
            }
            "kept" => {
                let rendered = self.record(&event, false);
                self.print(&rendered);
                self.status(&format!(
                    "{} is offline; your message is kept and delivered when they log in",
                    s("to")
                ));
            }
            "error" => self.print(&self.paint(RED, &format!("! error: {}", s("text")))),
            _ => self.print(&terminal_safe(line)),
        }
    }

    /// `14:03 [#dev] <ann> hello`; history lines carry the date too. Times are UTC.
    fn record(&self, record: &Value, with_date: bool) -> String {
        let s = |key: &str| text(record, key);
        let ts = record.get("ts").and_then(Value::as_i64).unwrap_or(0);
        let stamp = utc_minute(ts);
        let stamp = if with_date {
            stamp
        } else {
            stamp[11..].to_string()
        };
        let nick = s("nick");
        let text = s("text");
        let place = match record.get("room").and_then(Value::as_str) {
            Some(room) => self.paint(CYAN, &format!("[{}]", terminal_safe(room))),
            None if nick == self.nick => self.paint(MAGENTA, &format!("[pm to {}]", s("to"))),
            None => self.paint(MAGENTA, "[pm]"),
        };
        let body = if s("kind") == "me" {
            format!("* {} {text}", self.nick(&nick))
        } else {
            format!("<{}> {text}", self.nick(&nick))
        };
        format!("{} {place} {body}", self.paint(DIM, &stamp))
    }
}

/// The string field `key` of `event` ("" if there is none), fit for a terminal: whatever the
/// server sends, its control characters are shown as U+FFFD, so a hostile server (or one in the
/// middle, without TLS) cannot redraw the terminal, set its title or write to the clipboard.
fn text(event: &Value, key: &str) -> String {
    let value = event.get(key).and_then(Value::as_str).unwrap_or("");
    terminal_safe(value).into_owned()
}

/// The strings of the list field `key` of `event`, fit for a terminal (see [`text`]).
fn strings(event: &Value, key: &str) -> Vec<String> {
    event
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|v| v.as_str().map(|s| terminal_safe(s).into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_render_plainly_without_color() {
        let view = View {
            is_colored: false,
            is_json: true,
            refusal: None,
            nick: "bob".into(),
            room: None,
        };
        let message = json!({"type":"message","id":1,"ts":0,"kind":"say","room":"#dev","nick":"ann","text":"hi\u{1b}[2J"});
        assert_eq!(
            view.record(&message, false),
            "00:00 [#dev] <ann> hi\u{fffd}[2J"
        );
        let me = json!({"ts":0,"kind":"me","room":"#dev","nick":"ann","text":"waves"});
        assert_eq!(
            view.record(&me, true),
            "1970-01-01 00:00 [#dev] * ann waves"
        );
        let sent = json!({"ts":0,"kind":"private","nick":"bob","to":"ann","text":"psst"});
        assert_eq!(view.record(&sent, false), "00:00 [pm to ann] <bob> psst");
    }

    #[test]
    fn quit_words() {
        assert!(is_quit("/quit"));
        assert!(is_quit("/QUIT bye all"));
        assert!(!is_quit("quit"));
    }
}
