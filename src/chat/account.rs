//! Accounts: nicks protected by a password.
//!
//! `/register PASSWORD` protects the nick a member holds; `/login NICK PASSWORD` claims it from
//! any connection; `/password OLD NEW` changes it. Passwords are hashed with argon2id (the
//! RustCrypto `argon2` crate's defaults: 19 MiB, 2 passes) into a PHC string with a random
//! 16-byte salt, stored in the history database's `accounts` table. The password itself is
//! never stored, logged or echoed: [`Password`] prints as `<redacted>`.
//!
//! # Off the hub
//! Hashing is slow on purpose, so it never runs on the hub task or a runtime worker. The hub
//! hands a [`Job`] to the [`Checker`], which runs it on a blocking thread once one of
//! [`HASH_CONCURRENCY`](crate::limits::HASH_CONCURRENCY) slots is free, and hands back a
//! [`Checked`] result. The hub stays the only owner of nicks: it applies the result against the
//! state of that moment (the member may have left; another may hold the nick by then).
//!
//! # Guessing
//! [`FailureLimit`] counts failed logins per nick and per client address in a fixed window; past
//! the limit a login is refused without checking the password.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use caseless::Caseless;
use tokio::sync::{Semaphore, mpsc};
use unicode_normalization::UnicodeNormalization;
use unicode_script::{Script, UnicodeScript};
use unicode_security::mixed_script::AugmentedScriptSet;

use super::command::CommandError;
use super::history::{Store, StoreError};
use super::hub::MemberId;
use crate::limits::{HASH_CONCURRENCY, HASH_QUEUE, MAX_PASSWORD, MIN_PASSWORD};

/// A password on its way to be hashed or checked. Its `Debug` never shows it, so logging a
/// command or a request cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    /// A password given to log in (or to prove the old one): any text up to
    /// [`MAX_PASSWORD`] bytes. Rules for new passwords may tighten; old ones keep working.
    ///
    /// # Errors
    /// [`CommandError`] for an empty or too long password; the message never contains it.
    pub fn given(text: &str) -> Result<Password, CommandError> {
        if text.is_empty() {
            return Err(CommandError("the password is empty".into()));
        }
        if text.len() > MAX_PASSWORD {
            return Err(CommandError(format!(
                "password longer than {MAX_PASSWORD} bytes"
            )));
        }
        Ok(Password(text.to_string()))
    }

    /// A new password (`/register`, `/password`): [`MIN_PASSWORD`] characters to
    /// [`MAX_PASSWORD`] bytes, without spaces or control characters (the line protocol splits
    /// on spaces, and both protocols accept the same passwords).
    ///
    /// # Errors
    /// [`CommandError`] saying what is wrong; the message never contains the password.
    pub fn chosen(text: &str) -> Result<Password, CommandError> {
        let password = Password::given(text)?;
        if text.chars().count() < MIN_PASSWORD {
            return Err(CommandError(format!(
                "password too short: at least {MIN_PASSWORD} characters"
            )));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(CommandError(
                "a password may not contain spaces or control characters".into(),
            ));
        }
        Ok(password)
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Why an account operation failed on the server's side (never the caller's password).
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Hashing failed (no randomness for the salt) or a stored hash is unreadable.
    #[error("password hashing: {0}")]
    Hash(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Hashes `password` into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`) with a fresh
/// random salt. Slow on purpose: call it on a blocking thread.
///
/// # Errors
/// [`AccountError::Hash`] if the system's random source fails.
pub fn hash(password: &Password) -> Result<String, AccountError> {
    Argon2::default()
        .hash_password(password.bytes())
        .map(|phc| phc.to_string())
        .map_err(|err| AccountError::Hash(err.to_string()))
}

/// Whether `password` matches the PHC string `stored` (its own parameters are used, so hashes
/// made with other settings keep working). Slow on purpose: call it on a blocking thread.
///
/// # Errors
/// [`AccountError::Hash`] if `stored` is not a valid argon2 PHC string.
pub fn verify(password: &Password, stored: &str) -> Result<bool, AccountError> {
    match Argon2::default().verify_password(password.bytes(), stored) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(err) => Err(AccountError::Hash(err.to_string())),
    }
}

/// A nick's identity: the form under which it is held and registered, so that nicks differing
/// only in case, or only in how their accents are encoded, are one nick.
///
/// It is Unicode's canonical caseless form: the canonical decomposition (NFD), full case
/// folding (`CaseFolding.txt`, statuses C and F), then recomposed (NFC) to keep keys short and
/// readable (`ann` is `ann`). Full folding rather than simple: it is what Unicode defines for
/// caseless matching, so `Straße`, `STRASSE` and `strasse` are one nick, as are `ΟΔΟΣ`,
/// `οδος` and `οδοσ` (a final `ς` folds to `σ`; `str::to_lowercase` keeps it apart). Folding
/// needs no locale (the Turkish dotless i is not special-cased), so a key never depends on
/// where the server runs.
pub fn key(nick: &str) -> String {
    nick.chars().nfd().default_case_fold().nfc().collect()
}

/// A nick's look-alike key: the Unicode TR39 confusable skeleton of the nick as it is shown,
/// folded like [`key`]. Two nicks with the same look-alike key may be taken for each other on
/// screen (`аnn` in Cyrillic and `ann`, `BiIl` and `bill`, `rnary` and `mary`), so only one of
/// them may be held or registered. Not for display or storage: only for comparing.
pub fn look(nick: &str) -> String {
    let skeleton: String = unicode_security::skeleton(nick).collect();
    key(&skeleton)
}

/// Why `nick` mixes scripts more than TR39's "highly restrictive" level allows, or `None` if
/// it does not. Allowed: one script (with digits, `_` and `-`, which belong to every script),
/// or Latin with Han and kana (Japanese), with Han and Hangul (Korean), or with Han and
/// Bopomofo. Refused: any other mix, such as Latin with Cyrillic or Greek, whose letters are
/// the usual disguise of one nick as another.
pub fn mixed_scripts(nick: &str) -> Option<String> {
    // One script (or one writing system: Han with kana is Japanese) covers every character.
    if !AugmentedScriptSet::for_str(nick).is_empty() {
        return None;
    }
    let mut without_latin = AugmentedScriptSet::default();
    for c in nick.chars() {
        let set = AugmentedScriptSet::for_char(c);
        if !set.base.contains_script(Script::Latin) {
            without_latin.intersect_with(set);
        }
    }
    if without_latin.jpan || without_latin.kore || without_latin.hanb {
        return None;
    }
    let mut scripts: Vec<&str> = Vec::new();
    for script in nick.chars().map(|c| c.script()) {
        let name = script.full_name();
        if !matches!(script, Script::Common | Script::Inherited | Script::Unknown)
            && !scripts.contains(&name)
        {
            scripts.push(name);
        }
    }
    Some(format!(
        "nick '{nick}' mixes scripts ({}); use one script (Latin may go with Chinese, Japanese \
         or Korean)",
        scripts.join(", ")
    ))
}

/// What a login failure is counted against besides the nick: the client's IPv4 address, its
/// IPv6 /64 (one host usually has a whole /64), or `unix` for every Unix-socket client.
pub fn source_key(peer: &str) -> String {
    match peer.parse::<SocketAddr>().map(|addr| addr.ip()) {
        Ok(IpAddr::V4(ip)) => ip.to_string(),
        Ok(IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = ip.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) if peer.starts_with("unix:") => "unix".to_string(),
        Err(_) => peer.to_string(),
    }
}

/// Counts login attempts per key (a nick or a client address) in a fixed window: once `max`
/// attempts that did not succeed fall in one window, further attempts are refused until it
/// ends. An attempt counts when it starts, so a crowd of simultaneous guesses cannot all slip
/// in before the first failure is known; a success gives its attempt back.
#[derive(Debug)]
pub struct FailureLimit {
    max: u32,
    window: Duration,
    entries: HashMap<String, Window>,
    /// Expired entries are swept when the table grows past this.
    sweep_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

/// The table size below which expired entries are left alone.
const SWEEP_MIN: usize = 1024;

impl FailureLimit {
    /// A limit of `max` failures per `window`.
    pub fn new(max: u32, window: Duration) -> FailureLimit {
        FailureLimit {
            max: max.max(1),
            window,
            entries: HashMap::new(),
            sweep_at: SWEEP_MIN,
        }
    }

    /// `None` if `key` may try now, else how long until it may.
    pub fn wait(&self, key: &str, now: Instant) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        let end = entry.start + self.window;
        (entry.count >= self.max && now < end).then(|| end - now)
    }

    /// Counts an attempt for `key`.
    pub fn attempt(&mut self, key: &str, now: Instant) {
        if self.entries.len() >= self.sweep_at {
            let window = self.window;
            self.entries.retain(|_, e| now < e.start + window);
            self.sweep_at = (self.entries.len() * 2).max(SWEEP_MIN);
        }
        let window = self.window;
        let entry = self.entries.entry(key.to_string()).or_insert(Window {
            start: now,
            count: 0,
        });
        if now >= entry.start + window {
            *entry = Window {
                start: now,
                count: 0,
            };
        }
        entry.count = entry.count.saturating_add(1);
    }

    /// Gives back an attempt for `key` that succeeded.
    pub fn succeeded(&mut self, key: &str) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.count = entry.count.saturating_sub(1);
        }
    }

    /// Keys tracked (for tests).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// "try again in 12s", rounded up to whole seconds.
pub fn retry_text(wait: Duration) -> String {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    format!("too many failed logins; try again in {}s", secs.max(1))
}

/// What the hub asks the checker to do.
pub enum Job {
    /// Hash `password` and create the account `nick`.
    Register {
        /// The nick as its owner spells it.
        nick: String,
        /// The new password.
        password: Password,
    },
    /// Check `password` against the account.
    Login {
        /// The password given.
        password: Password,
    },
    /// Check `old`, then store the hash of `new`.
    ChangePassword {
        /// The current password.
        old: Password,
        /// The new one.
        new: Password,
    },
}

impl Job {
    fn kind(&self) -> JobKind {
        match self {
            Job::Register { .. } => JobKind::Register,
            Job::Login { .. } => JobKind::Login,
            Job::ChangePassword { .. } => JobKind::ChangePassword,
        }
    }
}

/// Which job a result answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// `/register`.
    Register,
    /// `/login`.
    Login,
    /// `/password`.
    ChangePassword,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The account was created.
    Registered,
    /// The nick was registered already.
    AlreadyRegistered,
    /// The password is right; `nick` is the account's nick as registered.
    Verified {
        /// The nick as registered.
        nick: String,
    },
    /// The password is wrong.
    WrongPassword,
    /// There is no such account.
    NoAccount,
    /// The new password is stored.
    PasswordChanged,
    /// The server failed (logged); the member is told only that.
    Failed,
}

/// A finished job, back at the hub.
#[derive(Debug)]
pub struct Checked {
    /// Who asked.
    pub member: MemberId,
    /// The account's key ([`key`] of its nick).
    pub key: String,
    /// The nick as the member gave it.
    pub nick: String,
    /// The client address the attempt counts against, if known.
    pub source: Option<String>,
    /// What was asked.
    pub kind: JobKind,
    /// How it went.
    pub outcome: Outcome,
}

/// Runs password jobs on blocking threads, at most [`HASH_CONCURRENCY`] at once and at most
/// [`HASH_QUEUE`] waiting, and sends each result to the hub.
pub struct Checker {
    store: Store,
    slots: Arc<Semaphore>,
    done: mpsc::UnboundedSender<Checked>,
    /// Jobs started and not yet back.
    pending: usize,
}

impl Checker {
    /// A checker over `store` whose results come back on the returned receiver.
    pub fn new(store: Store) -> (Checker, mpsc::UnboundedReceiver<Checked>) {
        return_hash_memory_when_freed();
        let (done, results) = mpsc::unbounded_channel();
        let checker = Checker {
            store,
            slots: Arc::new(Semaphore::new(HASH_CONCURRENCY)),
            done,
            pending: 0,
        };
        (checker, results)
    }

    /// Whether another job would pass the queue limit.
    pub fn is_full(&self) -> bool {
        self.pending >= HASH_CONCURRENCY + HASH_QUEUE
    }

    /// Starts `job` for `member` on account `key` (`nick` as given); its [`Checked`] comes back
    /// later. Call [`Checker::finished`] for each result received.
    pub fn start(
        &mut self,
        member: MemberId,
        key: String,
        nick: String,
        source: Option<String>,
        job: Job,
    ) {
        self.pending += 1;
        let store = self.store.clone();
        let slots = self.slots.clone();
        let done = self.done.clone();
        tokio::spawn(async move {
            let kind = job.kind();
            // The slot is held while the blocking thread works, so no more than
            // HASH_CONCURRENCY hashes ever run (or hold their memory) at once.
            let outcome = match slots.acquire_owned().await {
                Ok(permit) => {
                    let key = key.clone();
                    let work = tokio::task::spawn_blocking(move || {
                        let outcome = run(&store, &key, job);
                        drop(permit);
                        outcome
                    });
                    work.await.unwrap_or_else(|err| {
                        tracing::error!("password check panicked: {err}");
                        Outcome::Failed
                    })
                }
                Err(_) => Outcome::Failed,
            };
            let _ = done.send(Checked {
                member,
                key,
                nick,
                source,
                kind,
                outcome,
            });
        });
    }

    /// Notes that a result came back.
    pub fn finished(&mut self) {
        self.pending = self.pending.saturating_sub(1);
    }
}

/// Runs one job to its outcome (blocking: hashing and database access).
/// The size from which glibc's malloc always maps a block of its own, given back to the system
/// when freed. Left to itself, glibc raises this threshold above any such block freed, so
/// after the first password hash (argon2 takes ~19 MiB in one block) later hashes were carved
/// from the heap of the malloc arena of whichever blocking thread ran them, and stayed there
/// when freed: a login flood from a few addresses took a 20 MiB server to 585 MiB, never given
/// back (up to 8 arenas a core, each keeping a hash or two). Fixed at 1 MiB, well above the
/// buffers of the chat's own work (lines, 64 KiB reads), each hash's memory is returned when
/// it is done, and the resident memory stays at what [`HASH_CONCURRENCY`] hashes at once need.
const MALLOC_MMAP_THRESHOLD: usize = 1024 * 1024;

/// See [`MALLOC_MMAP_THRESHOLD`]. (Other allocators, such as musl's, map big blocks anyway.)
fn return_hash_memory_when_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes how later allocations are placed.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD as libc::c_int);
    }
}

fn run(store: &Store, key: &str, job: Job) -> Outcome {
    let result = match job {
        Job::Register { nick, password } => hash(&password).and_then(|phc| {
            Ok(if store.create_account(key, &nick, &phc)? {
                Outcome::Registered
            } else {
                Outcome::AlreadyRegistered
            })
        }),
        Job::Login { password } => match store.account(key) {
            Ok(Some((nick, phc))) => verify(&password, &phc).map(|is_right| {
                if is_right {
                    Outcome::Verified { nick }
                } else {
                    Outcome::WrongPassword
                }
            }),
            Ok(None) => Ok(Outcome::NoAccount),
            Err(err) => Err(err.into()),
        },
        Job::ChangePassword { old, new } => match store.account(key) {
            Ok(Some((_, phc))) => match verify(&old, &phc) {
                Ok(true) => hash(&new).and_then(|phc| {
                    Ok(if store.set_password(key, &phc)? {
                        Outcome::PasswordChanged
                    } else {
                        Outcome::NoAccount
                    })
                }),
                Ok(false) => Ok(Outcome::WrongPassword),
                Err(err) => Err(err),
            },
            Ok(None) => Ok(Outcome::NoAccount),
            Err(err) => Err(err.into()),
        },
    };
    result.unwrap_or_else(|err| {
        tracing::error!(account = key, "account operation failed: {err}");
        Outcome::Failed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show_in_debug_output() {
        let password = Password::chosen("correct-horse").unwrap();
        let shown = format!("{password:?} {:?}", Some(&password));
        assert!(!shown.contains("correct-horse"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn password_rules_say_why_without_echoing() {
        let long = "x".repeat(MAX_PASSWORD + 1);
        for (text, expected) in [
            ("", "empty"),
            ("short1", "too short"),
            ("has space in it", "spaces"),
            ("tab\there-long", "spaces"),
            (long.as_str(), "longer than 1024 bytes"),
        ] {
            let err = Password::chosen(text).unwrap_err().0;
            assert!(err.contains(expected), "{text:?}: {err}");
            if !text.is_empty() {
                assert!(!err.contains(text), "{err}");
            }
        }
        assert!(Password::chosen(&"x".repeat(MAX_PASSWORD)).is_ok());
        assert!(Password::chosen("пароль-длинный").is_ok());
        // Logging in checks only the length: old passwords keep working if the rules change.
        assert!(Password::given("short").is_ok());
        assert!(Password::given(&long).is_err());
    }

    #[test]
    fn hashes_are_salted_phc_strings_that_verify() {
        let password = Password::chosen("correct-horse").unwrap();
        let one = hash(&password).unwrap();
        let two = hash(&password).unwrap();
        assert!(one.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{one}");
        assert_ne!(one, two, "each hash has its own salt");
        assert!(!one.contains("correct-horse"));
        assert!(verify(&password, &one).unwrap());
        assert!(verify(&password, &two).unwrap());
        let wrong = Password::given("correct-horsf").unwrap();
        assert!(!verify(&wrong, &one).unwrap());
        assert!(verify(&password, "not a hash").is_err());
    }

    #[test]
    fn keys_fold_case_fully_and_ignore_how_accents_are_encoded() {
        // Greek final sigma: to_lowercase gave "οδος" for ΟΔΟΣ but kept "οδοσ" apart.
        assert_eq!(key("ΟΔΟΣ"), "οδοσ");
        assert_eq!(key("οδος"), "οδοσ");
        assert_eq!(key("οδοσ"), "οδοσ");
        assert_eq!(key("Straße"), key("STRASSE"));
        assert_eq!(key("ẞ"), "ss");
        // e + U+0301 and é are one nick; keys are NFC.
        assert_eq!(key("Re\u{301}my"), "rémy");
        assert_eq!(key("RÉMY"), "rémy");
        // A CJK compatibility ideograph is its unified twin (its canonical decomposition).
        assert_eq!(key("\u{F900}"), "\u{8C48}");
        assert_eq!(key("Ann_2-x"), "ann_2-x");
        assert_eq!(key("王小明"), "王小明");
    }

    #[test]
    fn look_alikes_share_a_look_key() {
        for (one, other) in [
            ("\u{430}nn", "ann"),
            ("\u{430}\u{441}\u{435}", "ace"),
            ("BiIl", "bill"),
            ("Ian", "lan"),
            ("rnary", "mary"),
            ("b0b", "bob"),
        ] {
            assert_eq!(look(one), look(other), "{one} {other}");
        }
        // It is about the spelling shown: case variants of one nick (which are that nick
        // anyway) may look different, and `ian` does not look like `lan`.
        for (one, other) in [
            ("ann", "anne"),
            ("王小明", "王小"),
            ("ian", "lan"),
            ("ΟΔΟΣ", "οδοσ"),
        ] {
            assert_ne!(look(one), look(other), "{one} {other}");
        }
    }

    #[test]
    fn scripts_may_mix_only_as_tr39_highly_restrictive_allows() {
        for nick in [
            "ann",
            "ann_2-x",
            "ΟΔΟΣ",
            "Дмитрий",
            "王小明",
            "やまだ太郎",
            "tanaka太郎",
            "kim김철수",
            "ли_2",
        ] {
            assert_eq!(mixed_scripts(nick), None, "{nick}");
        }
        let err = mixed_scripts("\u{430}nn").unwrap();
        assert!(err.contains("Cyrillic, Latin"), "{err}");
        assert!(mixed_scripts("alphaβ").unwrap().contains("Latin, Greek"));
        assert!(mixed_scripts("Дмитрийβ").is_some());
    }

    #[test]
    fn sources_group_addresses() {
        assert_eq!(source_key("127.0.0.1:5000"), "127.0.0.1");
        assert_eq!(source_key("[::ffff:192.0.2.3]:80"), "192.0.2.3");
        assert_eq!(
            source_key("[2001:db8:1:2:3:4:5:6]:443"),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            source_key("[2001:db8:1:2:ffff::1]:9"),
            source_key("[2001:db8:1:2::7]:10")
        );
        assert_eq!(source_key("unix:pid=42"), "unix");
        assert_eq!(source_key("unix:?"), "unix");
    }

    #[test]
    fn failures_are_limited_per_window() {
        let window = Duration::from_secs(60);
        let mut limit = FailureLimit::new(3, window);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(limit.wait("ann", t0), None, "attempt {i}");
            limit.attempt("ann", t0);
        }
        assert_eq!(limit.wait("ann", t0), Some(window));
        let later = t0 + Duration::from_secs(45);
        assert_eq!(limit.wait("ann", later), Some(Duration::from_secs(15)));
        assert_eq!(limit.wait("bob", later), None, "other keys are not limited");
        // Once the window is over, counting starts again.
        let next = t0 + window;
        assert_eq!(limit.wait("ann", next), None);
        limit.attempt("ann", next);
        assert_eq!(limit.wait("ann", next), None);
    }

    #[test]
    fn a_success_gives_its_attempt_back() {
        let mut limit = FailureLimit::new(2, Duration::from_secs(60));
        let now = Instant::now();
        limit.attempt("ann", now);
        limit.attempt("ann", now);
        assert!(limit.wait("ann", now).is_some());
        limit.succeeded("ann");
        assert!(limit.wait("ann", now).is_none());
        limit.succeeded("nobody");
    }

    #[test]
    fn expired_entries_are_swept() {
        let window = Duration::from_secs(1);
        let mut limit = FailureLimit::new(1, window);
        let t0 = Instant::now();
        for i in 0..SWEEP_MIN {
            limit.attempt(&format!("k{i}"), t0);
        }
        assert_eq!(limit.len(), SWEEP_MIN);
        limit.attempt("fresh", t0 + window);
        assert_eq!(limit.len(), 1);
    }

    #[test]
    fn retry_text_rounds_up() {
        assert_eq!(
            retry_text(Duration::from_millis(14_200)),
            "too many failed logins; try again in 15s"
        );
        assert_eq!(
            retry_text(Duration::from_secs(3)),
            "too many failed logins; try again in 3s"
        );
        assert_eq!(
            retry_text(Duration::from_millis(1)),
            "too many failed logins; try again in 1s"
        );
    }
}
