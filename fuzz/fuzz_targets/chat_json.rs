//! Fuzzes `parse_json` with raw text and with well-formed requests built from the input: no
//! panic, and every accepted nick and room is valid.
#![no_main]

mod chat_common;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use socktalk::chat::command::parse_json;

const TYPES: &[&str] = &[
    "line", "say", "me", "nick", "join", "part", "private", "msg", "who", "rooms", "history",
    "quit", "help", "json", "Say", "",
];
const FIELDS: &[&str] = &[
    "text", "room", "nick", "to", "limit", "before", "reason", "type", "extra",
];

#[derive(Arbitrary, Debug)]
enum Field {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    List(Vec<String>),
}

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(String),
    Built { kind: u8, fields: Vec<(u8, Field)> },
}

fuzz_target!(|input: Input| {
    let line = match input {
        Input::Raw(line) => line,
        Input::Built { kind, fields } => {
            let mut object = Map::new();
            object.insert("type".into(), TYPES[usize::from(kind) % TYPES.len()].into());
            for (name, field) in fields {
                let value = match field {
                    Field::Text(text) => Value::from(text),
                    Field::Int(n) => Value::from(n),
                    Field::Float(x) => Value::from(x),
                    Field::Bool(b) => Value::from(b),
                    Field::Null => Value::Null,
                    Field::List(items) => Value::from(items),
                };
                object.insert(FIELDS[usize::from(name) % FIELDS.len()].into(), value);
            }
            Value::Object(object).to_string()
        }
    };
    match parse_json(&line) {
        Ok(Some(command)) => chat_common::check(&command),
        Ok(None) => {}
        Err(err) => assert!(!err.0.is_empty()),
    }
});
