//! Fuzzes `parse_line`: no panic, every accepted nick and room is valid, and a plain line is
//! sent as typed.
#![no_main]

mod chat_common;

use libfuzzer_sys::fuzz_target;
use socktalk::chat::command::{Command, parse_line};

fuzz_target!(|line: &str| {
    match parse_line(line) {
        Ok(Some(command)) => {
            chat_common::check(&command);
            let typed = line.trim_end_matches(['\r', '\n']);
            // Blanks before a `/` still make a command.
            if !typed.trim_start().starts_with('/') {
                assert_eq!(
                    command,
                    Command::Say {
                        room: None,
                        text: typed.to_string()
                    }
                );
            } else if let Some(escaped) = typed.trim_start().strip_prefix("//") {
                assert_eq!(
                    command,
                    Command::Say {
                        room: None,
                        text: format!("/{escaped}")
                    }
                );
            }
        }
        Ok(None) => assert!(line.trim().is_empty(), "{line:?} ignored"),
        Err(err) => {
            assert!(!err.0.is_empty());
            chat_common::check_no_password_in(line, &err.0);
        }
    }
});
