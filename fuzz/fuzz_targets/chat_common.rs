//! Checks shared by the `chat_*` targets: whatever a parser accepts is a name the rest of the
//! chat can show and store safely.

use socktalk::chat::command::{Command, MAX_NICK_CHARS, MAX_ROOM_CHARS, valid_nick, valid_room};

fn check_nick(nick: &str) {
    let count = nick.chars().count();
    assert!(
        (1..=MAX_NICK_CHARS).contains(&count),
        "nick {nick:?}: {count} chars"
    );
    assert!(
        !nick.chars().any(|c| c.is_control() || c.is_whitespace()),
        "nick {nick:?} holds a control or space"
    );
    assert_eq!(
        valid_nick(nick).as_deref(),
        Ok(nick),
        "accepted nick not valid"
    );
}

fn check_room(room: &str) {
    let count = room.chars().count();
    assert!(
        (2..=MAX_ROOM_CHARS).contains(&count),
        "room {room:?}: {count} chars"
    );
    assert!(room.starts_with('#'), "room {room:?}");
    assert!(
        !room.chars().any(|c| c.is_control() || c.is_whitespace()),
        "room {room:?} holds a control or space"
    );
    // Normalizing is idempotent: an accepted room is accepted again as itself.
    assert_eq!(
        valid_room(room).as_deref(),
        Ok(room),
        "accepted room not valid"
    );
}

/// Checks every name in an accepted command.
pub fn check(command: &Command) {
    match command {
        Command::Nick(nick) => check_nick(nick),
        Command::Msg { to, text } => {
            check_nick(to);
            assert!(!text.trim().is_empty(), "empty private message");
        }
        Command::Join(room) => check_room(room),
        Command::Say { room, text } | Command::Me { room, text } => {
            room.as_deref().map(check_room);
            assert!(!text.trim().is_empty(), "empty message");
        }
        Command::Part(room) | Command::Who(room) | Command::History { room, .. } => {
            room.as_deref().map(check_room);
        }
        Command::Encoding(label) => assert!(!label.is_empty()),
        Command::Rooms | Command::Json | Command::Quit(_) | Command::Help => {}
        Command::Login { nick, .. } => {
            check_nick(nick);
            assert_redacted(command);
        }
        Command::Register(_) | Command::Password { .. } => assert_redacted(command),
    }
}

/// A command holding a password never shows it when printed (logged).
fn assert_redacted(command: &Command) {
    let printed = format!("{command:?}");
    assert!(printed.contains("<redacted>"), "{printed}");
}

/// An error about a line with a password never repeats the password: the words after
/// `/register`, `/login NICK` and `/password` that are long enough to be told apart from the
/// error texts' own words.
pub fn check_no_password_in(line: &str, error: &str) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let secrets: &[&str] = match words.first().map(|w| w.to_ascii_lowercase()).as_deref() {
        Some("/register") => words.get(1..).unwrap_or(&[]),
        Some("/login" | "/identify") => words.get(2..).unwrap_or(&[]),
        Some("/password" | "/passwd") => words.get(1..).unwrap_or(&[]),
        _ => &[],
    };
    let public = &words[..words.len() - secrets.len()];
    for secret in secrets.iter().filter(|w| w.len() >= 12) {
        // The error may quote a public word (an invalid nick) that happens to contain it.
        if public.iter().any(|word| word.contains(secret)) {
            continue;
        }
        assert!(
            !error.contains(secret),
            "error {error:?} repeats a password"
        );
    }
}
