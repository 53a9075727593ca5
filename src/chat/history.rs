//! Chat history in SQLite (rusqlite, bundled, WAL), written by one thread in batches.
//!
//! # Durability: nothing anyone saw is lost
//!
//! The hub never fans a message out itself. It hands the message to the [`Writer`] thread,
//! which takes everything queued (up to [`MAX_BATCH`]), inserts it in one transaction and
//! commits (group commit), then hands the committed batch back to the hub, which only then
//! delivers it. So every message any client has received is already in the database; a
//! `kill -9` loses at most messages nobody has seen. In WAL mode with `synchronous=NORMAL` a
//! commit survives the process dying; `--db-sync full` also makes it survive power loss, at
//! the cost of an fsync per batch.
//!
//! If a commit fails (disk full, `--db-max-size` reached, file removed), the batch comes back
//! marked failed: the hub tells each sender their message was not sent and delivers nothing,
//! so no one sees a message that is not in the history. The writer logs the failure at once,
//! then at most one summary line a second while failures go on, and one line when commits
//! succeed again: a flood of refused messages cannot flood the log too.
//!
//! # Size cap
//! `--db-max-size` caps the database file (SQLite's `max_page_count`). Once a commit would grow
//! it past the cap, the commit fails with "database or disk is full" and is handled as above.
//! The write-ahead log (`-wal` file) is not counted; it is checkpointed back into the database
//! every 1000 pages (about 4 MB), which bounds it in normal use.
//!
//! # Reading
//! The hub reads what it keeps cached (a room's replay on joining) on its own task. Longer or
//! older reads (`/history N`, paging back with `before`) go to the reader thread
//! ([`Store::spawn_reader`]), which has a read-only connection of its own: WAL lets it read
//! while the writer commits, and no one else waits while it does. A `:memory:` database cannot
//! be opened twice, so there the reader shares the one connection (and its lock).
//!
//! # Opening
//! [`Store::open`] checks that the database can really be written before the server starts: a
//! read-only file or file system would otherwise open without complaint (SQLite falls back to
//! reading only) and fail every message later. Failures to open are explained in terms of the
//! file (a missing directory, a directory, not a SQLite file, read-only) where that can be told.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, MAIN_DB, OpenFlags, params};
use tokio::sync::mpsc;

use super::account;
use super::event::{Kind, Record, now_ms};

/// Most messages committed in one transaction.
pub const MAX_BATCH: usize = 4096;

// The read queries below are run by the hub for every join, `/history` and login, and kept
// prepared. A prepared statement whose plan SQLite chose by a bound value is compiled again
// every time that parameter is bound: the bundled SQLite is built with STAT4, so a column
// compared with a parameter in a query that also sorts (`room = ?1 … ORDER BY id`), and any
// `LIMIT ?N`, made every call parse and plan its query anew, which nearly doubled the time of
// a 50-line replay (32 against 18 µs). A unary `+` makes those parameters plain expressions:
// the plan (the same index search) no longer depends on their values, and the statement is
// compiled once.

/// The last `?4` messages of room `?1` with `id < ?2` and `id <= ?3`, newest first.
const RECENT_SQL: &str = "SELECT id, ts, kind, room, nick, recipient, text FROM messages
     WHERE room = +?1 AND id < ?2 AND id <= ?3 ORDER BY id DESC LIMIT +?4";

/// The messages waiting in `?1`'s mailbox with `id <= ?2`, oldest first.
const MAIL_SQL: &str = "SELECT m.id, m.ts, m.kind, m.room, m.nick, m.recipient, m.text
     FROM mail JOIN messages m ON m.id = mail.message_id
     WHERE mail.recipient = +?1 AND mail.message_id <= ?2 ORDER BY m.id";

/// How many of those there are.
const MAIL_COUNT_SQL: &str = "SELECT COUNT(*) FROM mail WHERE recipient = ?1 AND message_id <= ?2";

/// Errors opening or using the history database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or set up.
    #[error("cannot open history database {path}: {reason}")]
    Open {
        /// The file.
        path: String,
        /// Why, in terms of the file where that can be told, else SQLite's reason.
        reason: String,
    },
    /// A query failed.
    #[error("history database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The reader thread could not be started.
    #[error("cannot start the history reader thread: {0}")]
    Thread(std::io::Error),
}

/// How hard a commit tries to reach the disk (`--db-sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Sync {
    /// Survives the process crashing (WAL `synchronous=NORMAL`).
    #[default]
    Normal,
    /// Also survives power loss (`synchronous=FULL`: an fsync per batch).
    Full,
}

/// The history database. Cheap to clone; every clone shares one connection (the
/// [reader](Store::spawn_reader) has its own).
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: String,
    /// `--db-max-size` in bytes (0: no cap), for log lines.
    max_size: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// A message waiting to be stored, with whoever should hear if storing fails.
#[derive(Debug, Clone)]
pub struct Pending<A> {
    /// Who sent it (the hub's member id).
    pub author: A,
    /// The message; its `id` is set by the commit.
    pub record: Record,
    /// A private message to a registered nick that is offline: it is also put in the mailbox
    /// of its recipient (`record.to`), in the same transaction.
    pub is_mail: bool,
}

/// A batch back from the writer: committed (ids set) or failed with a reason.
#[derive(Debug)]
pub struct Batch<A> {
    /// The messages, in submission order.
    pub items: Vec<Pending<A>>,
    /// Why the commit failed, if it did; then nothing in `items` was stored.
    pub error: Option<String>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`; `:memory:` keeps history in memory
    /// only, for this run. `max_size` caps the database file in bytes (0: no cap); see the
    /// [module docs](self#size-cap).
    ///
    /// The database must be writable: one that SQLite could only open for reading is refused
    /// here rather than failing every message later.
    ///
    /// # Errors
    /// [`StoreError::Open`] naming the file and the reason.
    pub fn open(path: &str, sync: Sync, max_size: u64) -> Result<Store, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: path.to_string(),
            reason,
        };
        if path.is_empty() {
            return Err(open_err(
                "no file name given (use :memory: to keep no history)".into(),
            ));
        }
        let is_memory = path == ":memory:";
        // Explains a failure in terms of the file where possible, else in SQLite's words.
        let explain = |err: rusqlite::Error| {
            let reason = if is_memory {
                None
            } else {
                diagnose(Path::new(path), &err)
            };
            open_err(reason.unwrap_or_else(|| sqlite_reason(&err)))
        };
        let mut conn = if is_memory {
            Connection::open_in_memory()
        } else {
            Connection::open_with_flags(
                Path::new(path),
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            )
        }
        .map_err(explain)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(explain)?;
        // SQLite opens a file it may not write for reading only, without an error.
        if conn.is_readonly(MAIN_DB).map_err(explain)? {
            let why = read_only_reason(Path::new(path));
            return Err(open_err(format!("the file is read-only ({why})")));
        }
        if !is_memory {
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(explain)?;
        }
        let level = match sync {
            Sync::Normal => "NORMAL",
            Sync::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", level)
            .map_err(explain)?;
        if max_size > 0 {
            let page_size: i64 = conn
                .pragma_query_value(None, "page_size", |row| row.get(0))
                .map_err(explain)?;
            let page_size = page_size.max(1) as u64;
            let pages = i64::try_from(max_size / page_size)
                .unwrap_or(i64::MAX)
                .max(1);
            // SQLite never sets the cap below the pages already in use; it answers the cap set.
            let set: i64 = conn
                .pragma_update_and_check(None, "max_page_count", pages, |row| row.get(0))
                .map_err(explain)?;
            if set > pages {
                tracing::warn!(
                    "history database {path} is already {} bytes, more than --db-max-size {max_size}: \
                     it will not grow, so messages are stored only while its free pages last, and \
                     then refused (not sent); raise the cap, or VACUUM it smaller (see the README)",
                    set as u64 * page_size
                );
            }
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS messages (
                 id    INTEGER PRIMARY KEY,
                 ts    INTEGER NOT NULL,
                 kind  TEXT NOT NULL,
                 room  TEXT,
                 nick  TEXT NOT NULL,
                 recipient TEXT,
                 text  TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS messages_by_room ON messages (room, id);
             CREATE TABLE IF NOT EXISTS accounts (
                 nick_key TEXT PRIMARY KEY,
                 nick     TEXT NOT NULL,
                 hash     TEXT NOT NULL,
                 created  INTEGER NOT NULL,
                 updated  INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS mail (
                 message_id INTEGER PRIMARY KEY REFERENCES messages (id),
                 recipient  TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS mail_by_recipient ON mail (recipient, message_id);",
        )
        .map_err(explain)?;
        migrate(&mut conn).map_err(explain)?;
        // Take the write lock once: a database that cannot be written (its -wal file, say)
        // fails here, at start, not at the first message.
        conn.execute_batch("BEGIN IMMEDIATE; COMMIT;")
            .map_err(explain)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_string(),
            max_size,
        })
    }

    /// The last `limit` messages of `room` with `id < before` (if given) and `id <= up_to`,
    /// oldest first.
    ///
    /// `up_to` is the newest id the hub has delivered: anything newer is committed but still on
    /// its way, and will reach a member who just joined live, so replaying it would show it twice.
    ///
    /// # Errors
    /// [`StoreError::Sql`].
    pub fn recent(
        &self,
        room: &str,
        limit: usize,
        before: Option<i64>,
        up_to: i64,
    ) -> Result<Vec<Record>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare_cached(RECENT_SQL)?;
        let rows = statement.query_map(
            params![room, before.unwrap_or(i64::MAX), up_to, limit as i64],
            record_from_row,
        )?;
        let mut records = rows.collect::<Result<Vec<_>, _>>()?;
        records.reverse();
        Ok(records)
    }

    /// Every stored message, oldest first (for tests and exports).
    ///
    /// # Errors
    /// [`StoreError::Sql`].
    pub fn all(&self) -> Result<Vec<Record>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT id, ts, kind, room, nick, recipient, text FROM messages ORDER BY id",
        )?;
        let rows = statement.query_map([], record_from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The newest id stored (0 for an empty database).
    ///
    /// # Errors
    /// [`StoreError::Sql`].
    pub fn last_id(&self) -> Result<i64, StoreError> {
        let conn = self.lock();
        Ok(
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM messages", [], |row| {
                row.get(0)
            })?,
        )
    }

    /// Every account as `(key, nick)`: the key it is registered under ([`account::key`]), and the
    /// nick as its owner spelled it.
    ///
    /// # Errors
    /// [`StoreError::Sql`].
    pub fn accounts(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare("SELECT nick_key, nick FROM accounts")?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The account registered under `key`, as `(nick, PHC hash)`.
    ///
    /// # Errors
    /// [`StoreError::Sql`].
    pub fn account(&self, key: &str) -> Result<Option<(String, String)>, StoreError> {
        let conn = self.lock();
        let mut statement =
            conn.prepare_cached("SELECT nick, hash FROM accounts WHERE nick_key = ?1")?;
        let mut rows = statement.query_map([key], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.next().transpose()?)
    }

    /// Creates the account `key` (`nick` as spelled) with password hash `hash`, with an empty
    /// mailbox; `false` if it exists already (then nothing changes).
    ///
    /// # Errors
    /// [`StoreError::Sql`].
    pub fn create_account(&self, key: &str, nick: &str, hash: &str) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let now = now_ms();
        let added = tx.execute(
            "INSERT OR IGNORE INTO accounts (nick_key, nick, hash, created, updated)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![key, nick, hash, now],
        )?;
        if added == 1 {
            // Mail still kept for the nick was kept for an earlier owner, whose account an
            // operator removed: it is not the new owner's to read.
            tx.execute("DELETE FROM mail WHERE recipient = ?1", [key])?;
        }
        tx.commit()?;
        Ok(added == 1)
    }

    /// Replaces the password hash of account `key`; `false` if there is no such account.
    ///
    /// # Errors
    /// [`StoreError::Sql`].
    pub fn set_password(&self, key: &str, hash: &str) -> Result<bool, StoreError> {
        let conn = self.lock();
        let changed = conn.execute(
            "UPDATE accounts SET hash = ?2, updated = ?3 WHERE nick_key = ?1",
            params![key, hash, now_ms()],
        )?;
        Ok(changed == 1)
    }

    /// The messages in `recipient`'s mailbox with `id <= up_to`, oldest first (newer ones are
    /// committed but still on their way through the hub, which delivers them itself).
    ///
    /// # Errors
    /// [`StoreError::Sql`].
    pub fn mail(&self, recipient: &str, up_to: i64) -> Result<Vec<Record>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare_cached(MAIL_SQL)?;
        let rows = statement.query_map(params![recipient, up_to], record_from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// How many messages with `id <= up_to` wait in `recipient`'s mailbox.
    ///
    /// # Errors
    /// [`StoreError::Sql`].
    pub fn mail_count(&self, recipient: &str, up_to: i64) -> Result<usize, StoreError> {
        let conn = self.lock();
        let count: i64 = conn
            .prepare_cached(MAIL_COUNT_SQL)?
            .query_row(params![recipient, up_to], |row| row.get(0))?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// Puts the stored message `id` in `recipient`'s mailbox.
    ///
    /// # Errors
    /// [`StoreError::Sql`].
    pub fn keep_mail(&self, id: i64, recipient: &str) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT OR IGNORE INTO mail (message_id, recipient) VALUES (?1, ?2)",
            params![id, recipient],
        )?;
        Ok(())
    }

    /// Takes delivered messages out of their mailboxes (the messages stay in history, as every
    /// private message does).
    ///
    /// # Errors
    /// [`StoreError::Sql`].
    pub fn remove_mail(&self, ids: &[i64]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM mail WHERE message_id = ?1")?;
            for id in ids {
                delete.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back), so a poisoned lock is still usable.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Inserts `items` in one transaction, setting their ids.
    fn commit<A>(&self, items: &mut [Pending<A>]) -> Result<(), rusqlite::Error> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (ts, kind, room, nick, recipient, text)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut mail =
                tx.prepare_cached("INSERT INTO mail (message_id, recipient) VALUES (?1, ?2)")?;
            for item in items.iter_mut() {
                let r = &item.record;
                insert.execute(params![r.ts, r.kind.as_str(), r.room, r.nick, r.to, r.text])?;
                item.record.id = tx.last_insert_rowid();
                if item.is_mail {
                    let recipient = item.record.to.as_deref().map(account::key);
                    mail.execute(params![item.record.id, recipient])?;
                }
            }
        }
        tx.commit()
    }

    /// Commits `items` in one transaction if it can. If the database is full (`--db-max-size`
    /// or the disk), a batch may not fit whole while its first messages would: then they are
    /// committed one by one, in order, up to the first that does not fit. Returns the batch
    /// committed and, if any, the rest, refused with the reason.
    fn commit_what_fits<A>(&self, mut items: Vec<Pending<A>>) -> (Batch<A>, Option<Batch<A>>) {
        let err = match self.commit(&mut items) {
            Ok(()) => return (Batch { items, error: None }, None),
            Err(err) => err,
        };
        let mut saved = 0;
        let mut err = err;
        if items.len() > 1 && err.sqlite_error_code() == Some(ErrorCode::DiskFull) {
            for item in &mut items {
                match self.commit(std::slice::from_mut(item)) {
                    Ok(()) => saved += 1,
                    Err(next) => {
                        err = next;
                        break;
                    }
                }
            }
        }
        let refused = items.split_off(saved);
        let refused = (!refused.is_empty()).then(|| Batch {
            items: refused,
            error: Some(sqlite_reason(&err)),
        });
        (Batch { items, error: None }, refused)
    }

    /// Starts the writer thread. Messages sent to the returned [`Writer`] come back on
    /// `committed_tx` in batches, in the order they were sent.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn spawn_writer<A: Send + 'static>(
        &self,
        committed_tx: mpsc::UnboundedSender<Batch<A>>,
    ) -> std::io::Result<Writer<A>> {
        let (pending_tx, mut pending_rx) = mpsc::unbounded_channel::<Pending<A>>();
        let store = self.clone();
        let thread = std::thread::Builder::new()
            .name("socktalk-history".into())
            .spawn(move || {
                let mut failures = Failures::default();
                while let Some(first) = pending_rx.blocking_recv() {
                    // Let the threads that are ready run first (an idle machine has none, and
                    // this returns at once): in a burst they are the ones still sending, and
                    // what they send joins this commit. Each commit is a fan-out round to every
                    // member of the room, and a burst cut into many small rounds cost the
                    // server up to twice the CPU.
                    std::thread::yield_now();
                    let mut items = vec![first];
                    while items.len() < MAX_BATCH {
                        match pending_rx.try_recv() {
                            Ok(item) => items.push(item),
                            Err(_) => break,
                        }
                    }
                    let (saved, refused) = store.commit_what_fits(items);
                    if !saved.items.is_empty() {
                        failures.saved();
                        if committed_tx.send(saved).is_err() {
                            break;
                        }
                    }
                    if let Some(refused) = refused {
                        let reason = refused.error.as_deref().unwrap_or_default();
                        failures.failed(refused.items.len(), reason, || store.size_note());
                        if committed_tx.send(refused).is_err() {
                            break;
                        }
                    }
                }
                failures.finish();
            })?;
        Ok(Writer {
            pending_tx: Some(pending_tx),
            thread: Some(thread),
        })
    }
}

impl Store {
    /// Another handle on the database for reading only, with a connection of its own: in WAL
    /// mode its reads neither wait for the writer's commits nor hold them up. A `:memory:`
    /// database cannot be opened twice: there it is this handle, sharing its connection.
    ///
    /// # Errors
    /// [`StoreError::Open`] naming the file and the reason.
    pub fn reading(&self) -> Result<Store, StoreError> {
        if self.path == ":memory:" {
            return Ok(self.clone());
        }
        let open_err = |err: rusqlite::Error| StoreError::Open {
            path: self.path.clone(),
            reason: format!("opening it again for reading: {}", sqlite_reason(&err)),
        };
        let conn = Connection::open_with_flags(
            Path::new(&self.path),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path: self.path.clone(),
            max_size: self.max_size,
        })
    }

    /// Starts the reader thread (`socktalk-reader`), over a [reading](Store::reading) handle
    /// of its own: each job sent to the returned [`Reader`] is given to `answer` with that
    /// handle, in the order sent, and what `answer` returns goes to `done_tx`. Reads too long
    /// or too rare to cache (paging back through history) run there, so that no one waits
    /// for them but whoever asked.
    ///
    /// # Errors
    /// The connection could not be opened or the thread spawned.
    pub fn spawn_reader<J, R, F>(
        &self,
        done_tx: mpsc::UnboundedSender<R>,
        mut answer: F,
    ) -> Result<Reader<J>, StoreError>
    where
        J: Send + 'static,
        R: Send + 'static,
        F: FnMut(&Store, J) -> R + Send + 'static,
    {
        let store = self.reading()?;
        let (jobs_tx, mut jobs_rx) = mpsc::unbounded_channel::<J>();
        let thread = std::thread::Builder::new()
            .name("socktalk-reader".into())
            .spawn(move || {
                while let Some(job) = jobs_rx.blocking_recv() {
                    if done_tx.send(answer(&store, job)).is_err() {
                        break;
                    }
                }
            })
            .map_err(StoreError::Thread)?;
        Ok(Reader {
            jobs_tx: Some(jobs_tx),
            thread: Some(thread),
        })
    }
}

impl Store {
    /// How big the database is next to its cap, for a log line about a full database
    /// (empty without a cap).
    fn size_note(&self) -> String {
        if self.max_size == 0 {
            return String::new();
        }
        let conn = self.lock();
        let size = conn
            .query_row(
                "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map_or_else(|_| "?".to_string(), |bytes| bytes.to_string());
        format!(
            "; the database is {size} bytes, --db-max-size is {}",
            self.max_size
        )
    }
}

/// The writer's log of failed commits: the first failure at once, then at most one summary a
/// [`FAILURE_LOG_EVERY`] while they go on, and one line once commits have succeeded again for
/// that long (near a size cap, small messages may still fit between refused ones; that is not
/// "saving again").
#[derive(Default)]
struct Failures {
    /// When the last line was logged; `None` while commits succeed.
    logged_at: Option<Instant>,
    /// When a commit last failed.
    failed_at: Option<Instant>,
    /// The reason last logged.
    reason: String,
    /// Messages refused since the last line.
    unlogged: usize,
    /// Messages refused since commits started failing.
    total: usize,
}

/// How often, at most, the writer logs that commits are still failing.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(1);

impl Failures {
    /// `count` messages were refused because a commit failed for `reason`; `note` adds detail
    /// to a line (it is only asked for when a line is logged).
    fn failed(&mut self, count: usize, reason: &str, note: impl FnOnce() -> String) {
        let now = Instant::now();
        self.total += count;
        self.unlogged += count;
        self.failed_at = Some(now);
        match self.logged_at {
            Some(at) if reason == self.reason && now.duration_since(at) < FAILURE_LOG_EVERY => {}
            Some(at) => {
                tracing::error!(
                    "history: still cannot save messages ({reason}{}): {} more refused in the \
                     last {:.1}s, {} in all",
                    note(),
                    self.unlogged,
                    now.duration_since(at).as_secs_f64(),
                    self.total
                );
                self.log_at(now, reason);
            }
            None => {
                tracing::error!(
                    "history: cannot save messages ({reason}{}): {count} message(s) refused; \
                     senders are told \"not sent\" and nothing unsaved is delivered",
                    note()
                );
                self.log_at(now, reason);
            }
        }
    }

    fn log_at(&mut self, now: Instant, reason: &str) {
        self.logged_at = Some(now);
        reason.clone_into(&mut self.reason);
        self.unlogged = 0;
    }

    /// A commit succeeded.
    fn saved(&mut self) {
        let Some(failed_at) = self.failed_at else {
            return;
        };
        if failed_at.elapsed() >= FAILURE_LOG_EVERY {
            tracing::warn!(
                "history: saving messages again; {} were refused while it could not",
                self.total
            );
            *self = Failures::default();
        }
    }

    /// The writer is stopping: refusals not yet logged are logged now.
    fn finish(&mut self) {
        if self.unlogged > 0 {
            tracing::error!(
                "history: writer stopping: {} more refused ({}), {} in all",
                self.unlogged,
                self.reason,
                self.total
            );
        }
    }
}

/// The layout this build writes, kept in SQLite's `user_version`. 0: account and mailbox keys
/// are `str::to_lowercase` of the nick; 1: they are [`account::key`] (Unicode case folding of
/// the nick in normal form C).
pub const SCHEMA_VERSION: i64 = 1;

/// What an account whose key another, older account now has is kept under: its old key with
/// this after it. No nick's key contains a space, so no `/login` or `/nick` reaches it.
pub const CLASH_SUFFIX: &str = " (clash)";

/// Brings an older database to [`SCHEMA_VERSION`], in one transaction: all of it or nothing.
///
/// Version 0 to 1 gives every account the key [`account::key`] of its nick, and its mailbox
/// with it. Where two accounts now have one key (`ΟΔΟΣ` and `οδοσ`, which `to_lowercase` kept
/// apart), the older keeps the key; each other is kept whole, password and mail, under its old
/// key and [`CLASH_SUFFIX`], where no login reaches it until an operator gives it a nick of
/// its own; each such account is logged as a warning. Mail kept for a key no account has (its
/// account was removed) leaves the mailboxes first (the messages stay in history), as a new
/// account of that nick would have dropped it: otherwise an account whose key moves onto that
/// key would be handed someone else's mail.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Another server may have migrated it while this one waited for the lock.
    let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    let accounts: Vec<(i64, String, String)> = {
        let mut statement =
            tx.prepare("SELECT rowid, nick_key, nick FROM accounts ORDER BY created, rowid")?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    // Old key to new key, for the accounts whose key changes.
    let mut moves: Vec<(i64, String, String)> = Vec::new();
    let mut owners: std::collections::HashMap<String, String> = Default::default();
    for (rowid, old, nick) in accounts {
        let new = account::key(&nick);
        let target = match owners.get(&new) {
            Some(owner) => {
                let kept = format!("{old}{CLASH_SUFFIX}");
                tracing::warn!(
                    "history: accounts '{owner}' and '{nick}' are one nick now (case is folded \
                     fully); '{owner}', the older, keeps it, and '{nick}' is kept with its \
                     password and mail under key '{kept}', where no login reaches it: give it \
                     a nick of its own (see the README's Accounts section)"
                );
                kept
            }
            None => {
                owners.insert(new.clone(), nick);
                new
            }
        };
        if target != old {
            moves.push((rowid, old, target));
        }
    }
    // Mail of removed accounts is no one's: it must not become the mail of an account whose
    // new key is that old key (`Straße`, once `straße`, now `strasse`).
    tx.execute(
        "DELETE FROM mail WHERE recipient NOT IN (SELECT nick_key FROM accounts)",
        [],
    )?;
    // Through keys no nick has (they hold a control character), so that no move meets a key
    // another move has yet to free.
    let temporary = |rowid: i64| format!("\u{1}{rowid}");
    {
        let mut account = tx.prepare("UPDATE accounts SET nick_key = ?2 WHERE rowid = ?1")?;
        let mut mail = tx.prepare("UPDATE mail SET recipient = ?2 WHERE recipient = ?1")?;
        for (rowid, old, _) in &moves {
            account.execute(params![rowid, temporary(*rowid)])?;
            mail.execute(params![old, temporary(*rowid)])?;
        }
        for (rowid, _, target) in &moves {
            account.execute(params![rowid, target])?;
            mail.execute(params![temporary(*rowid), target])?;
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    if !moves.is_empty() {
        tracing::info!(
            "history: {} account key(s) moved to Unicode case folding",
            moves.len()
        );
    }
    Ok(())
}

/// SQLite's reason for `err`, without rusqlite's decoration.
fn sqlite_reason(err: &rusqlite::Error) -> String {
    match err {
        rusqlite::Error::SqliteFailure(code, Some(message)) if message.is_empty() => {
            code.to_string()
        }
        rusqlite::Error::SqliteFailure(_, Some(message)) => {
            // "unable to open database file: PATH" repeats the path the caller names.
            const CANNOT_OPEN: &str = "unable to open database file";
            if message.starts_with(CANNOT_OPEN) {
                CANNOT_OPEN.to_string()
            } else {
                message.clone()
            }
        }
        other => other.to_string(),
    }
}

/// Why SQLite could not open or set up the database at `path`, told from the file system, or
/// `None` if nothing there explains it.
fn diagnose(path: &Path, err: &rusqlite::Error) -> Option<String> {
    use std::fs;
    if err.sqlite_error_code() == Some(ErrorCode::NotADatabase) {
        return Some("not a SQLite database (is it the right file?)".into());
    }
    if err.sqlite_error_code() == Some(ErrorCode::ReadOnly) {
        return Some(format!(
            "the file is read-only ({})",
            read_only_reason(path)
        ));
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Some("it is a directory; name a file in it".into()),
        Ok(_) => {
            if let Err(err) = fs::OpenOptions::new().read(true).write(true).open(path) {
                return Some(format!("cannot open it: {}", io_reason(&err)));
            }
            // The file itself is fine; SQLite also creates `-wal` and `-shm` files beside it.
            if !is_writable_dir(dir) {
                return Some(format!(
                    "cannot create its -wal and -shm files: directory {} is not writable",
                    dir.display()
                ));
            }
            None
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => match fs::metadata(dir) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Some(format!("directory {} does not exist", dir.display()))
            }
            Err(err) => Some(format!(
                "cannot reach {}: {}",
                dir.display(),
                io_reason(&err)
            )),
            Ok(meta) if !meta.is_dir() => Some(format!("{} is not a directory", dir.display())),
            Ok(_) => {
                // The file would be created here; try it, and take it back.
                match fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                {
                    Err(err) => Some(format!("cannot create it: {}", io_reason(&err))),
                    Ok(_) => {
                        let _ = fs::remove_file(path);
                        None
                    }
                }
            }
        },
        Err(err) => Some(format!("cannot reach it: {}", io_reason(&err))),
    }
}

/// Why the file at `path` can only be read: the system's answer to opening it for writing.
fn read_only_reason(path: &Path) -> String {
    match std::fs::OpenOptions::new().write(true).open(path) {
        Err(err) => io_reason(&err),
        Ok(_) if !is_writable_dir(path.parent().unwrap_or(Path::new("."))) => {
            "its directory is not writable".into()
        }
        Ok(_) => "SQLite may only read it".into(),
    }
}

/// Whether files can be created in `dir` (`access(2)` with `W_OK`).
fn is_writable_dir(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(c_path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(c_path.as_ptr(), libc::W_OK) == 0 }
}

/// An I/O error's text without "(os error N)", starting lowercase.
fn io_reason(err: &std::io::Error) -> String {
    crate::error::lowercase_io(err)
}

/// A row of `SELECT id, ts, kind, room, nick, recipient, text` as a [`Record`].
fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        id: row.get(0)?,
        ts: row.get(1)?,
        kind: Kind::from_db(&row.get::<_, String>(2)?),
        room: row.get(3)?,
        nick: row.get(4)?,
        to: row.get(5)?,
        text: row.get(6)?,
    })
}

/// The sending end of the writer thread.
pub struct Writer<A> {
    pending_tx: Option<mpsc::UnboundedSender<Pending<A>>>,
    thread: Option<JoinHandle<()>>,
}

impl<A> Writer<A> {
    /// Queues a message for the next batch. Returns it if the writer has stopped.
    pub fn submit(&self, item: Pending<A>) -> Result<(), Pending<A>> {
        match &self.pending_tx {
            Some(tx) => tx.send(item).map_err(|e| e.0),
            None => Err(item),
        }
    }

    /// Stops taking messages; the thread commits what is queued, then ends.
    pub fn close(&mut self) {
        self.pending_tx.take();
    }

    /// Closes and waits for the thread to finish its last batch.
    pub fn finish(&mut self) {
        self.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The sending end of the reader thread.
pub struct Reader<J> {
    jobs_tx: Option<mpsc::UnboundedSender<J>>,
    thread: Option<JoinHandle<()>>,
}

impl<J> Reader<J> {
    /// Queues a job. Returns it if the reader has stopped.
    pub fn read(&self, job: J) -> Result<(), J> {
        match &self.jobs_tx {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// Stops taking jobs and waits for the thread to finish the one it is on.
    pub fn finish(&mut self) {
        self.jobs_tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(room: &str, text: &str) -> Record {
        Record {
            id: 0,
            ts: 1,
            kind: Kind::Say,
            room: Some(room.into()),
            nick: "ann".into(),
            to: None,
            text: text.into(),
        }
    }

    #[test]
    fn writer_commits_in_order_and_history_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let store = Store::open(path.to_str().unwrap(), Sync::Normal, 0).unwrap();
        let (committed_tx, mut committed_rx) = mpsc::unbounded_channel();
        let mut writer = store.spawn_writer::<u32>(committed_tx).unwrap();
        for i in 0..100 {
            writer
                .submit(Pending {
                    author: i,
                    record: say(if i % 2 == 0 { "#a" } else { "#b" }, &format!("m{i}")),
                    is_mail: false,
                })
                .unwrap();
        }
        writer.finish();
        let mut ids = Vec::new();
        while let Ok(batch) = committed_rx.try_recv() {
            assert!(batch.error.is_none());
            ids.extend(batch.items.iter().map(|item| (item.author, item.record.id)));
        }
        assert_eq!(ids.len(), 100);
        assert!(ids.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        let last = store.last_id().unwrap();
        let recent = store.recent("#a", 3, None, last).unwrap();
        let texts: Vec<_> = recent.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["m94", "m96", "m98"]);
        let older = store.recent("#a", 2, Some(recent[0].id), last).unwrap();
        let texts: Vec<_> = older.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["m90", "m92"]);
        // Reopening finds everything.
        drop(store);
        let again = Store::open(path.to_str().unwrap(), Sync::Full, 0).unwrap();
        assert_eq!(again.all().unwrap().len(), 100);
    }

    #[test]
    fn a_batch_too_big_for_the_cap_saves_what_fits_in_order() {
        let store = Store::open(":memory:", Sync::Normal, 64 * 1024).unwrap();
        let padding = "x".repeat(300);
        let items: Vec<Pending<usize>> = (0..400)
            .map(|i| Pending {
                author: i,
                record: say("#a", &format!("{i:04} {padding}")),
                is_mail: false,
            })
            .collect();
        let (saved, refused) = store.commit_what_fits(items);
        let refused = refused.expect("400 messages of 300 bytes do not fit in 64 KiB");
        assert!(saved.error.is_none());
        assert!(!saved.items.is_empty());
        assert_eq!(saved.items.len() + refused.items.len(), 400);
        // A prefix is saved, in order; the rest is refused with SQLite's reason.
        assert!(
            saved
                .items
                .iter()
                .enumerate()
                .all(|(i, item)| item.author == i)
        );
        assert_eq!(refused.items[0].author, saved.items.len());
        assert_eq!(refused.error.as_deref(), Some("database or disk is full"));
        let stored = store.all().unwrap();
        let ids: Vec<i64> = saved.items.iter().map(|item| item.record.id).collect();
        assert_eq!(stored.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    }

    #[test]
    fn a_database_from_before_accounts_opens_and_keeps_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE messages (
                     id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL,
                     room TEXT, nick TEXT NOT NULL, recipient TEXT, text TEXT NOT NULL);
                 INSERT INTO messages (ts, kind, room, nick, text)
                     VALUES (1, 'say', '#a', 'ann', 'from before');",
            )
            .unwrap();
        }
        let store = Store::open(path.to_str().unwrap(), Sync::Normal, 0).unwrap();
        assert_eq!(store.all().unwrap()[0].text, "from before");
        assert!(store.accounts().unwrap().is_empty());
        assert!(store.create_account("ann", "Ann", "$argon2id$x").unwrap());
        assert_eq!(store.mail_count("ann", i64::MAX).unwrap(), 0);
    }

    /// A database as version 0 left it: keys are `to_lowercase` of the nick.
    fn old_layout(path: &Path, accounts: &[(&str, i64)], mail: &[&str]) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(
            "CREATE TABLE messages (
                 id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL,
                 room TEXT, nick TEXT NOT NULL, recipient TEXT, text TEXT NOT NULL);
             CREATE TABLE accounts (
                 nick_key TEXT PRIMARY KEY, nick TEXT NOT NULL, hash TEXT NOT NULL,
                 created INTEGER NOT NULL, updated INTEGER NOT NULL);
             CREATE TABLE mail (
                 message_id INTEGER PRIMARY KEY REFERENCES messages (id),
                 recipient TEXT NOT NULL);",
        )
        .unwrap();
        for (nick, created) in accounts {
            conn.execute(
                "INSERT INTO accounts VALUES (?1, ?2, ?3, ?4, ?4)",
                params![
                    nick.to_lowercase(),
                    nick,
                    format!("hash of {nick}"),
                    created
                ],
            )
            .unwrap();
        }
        for (i, key) in mail.iter().enumerate() {
            conn.execute(
                "INSERT INTO messages (ts, kind, nick, recipient, text)
                 VALUES (1, 'private', 'bob', ?1, ?2)",
                params![key, format!("m{i}")],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO mail VALUES (?1, ?2)",
                params![conn.last_insert_rowid(), key],
            )
            .unwrap();
        }
    }

    fn mail_texts(store: &Store, key: &str) -> Vec<String> {
        let mail = store.mail(key, i64::MAX).unwrap();
        mail.into_iter().map(|r| r.text).collect()
    }

    #[test]
    fn old_keys_move_to_case_folding_and_a_clash_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        // ΟΔΟΣ (older, key οδος) and οδοσ (key οδοσ) are one nick now; the older keeps it.
        old_layout(
            &path,
            &[
                ("Ann", 1),
                ("οδοσ", 3),
                ("ΟΔΟΣ", 2),
                ("\u{F900}", 4),
                ("Straße", 5),
            ],
            // m5 was kept for a removed account `strasse`: Straße's key now.
            &["ann", "οδος", "οδοσ", "οδος", "gone", "strasse"],
        );
        let store = Store::open(path.to_str().unwrap(), Sync::Normal, 0).unwrap();
        let mut accounts = store.accounts().unwrap();
        accounts.sort();
        assert_eq!(
            accounts,
            [
                ("ann".to_string(), "Ann".to_string()),
                ("strasse".to_string(), "Straße".to_string()),
                ("οδοσ".to_string(), "ΟΔΟΣ".to_string()),
                ("οδοσ (clash)".to_string(), "οδοσ".to_string()),
                ("\u{8C48}".to_string(), "\u{F900}".to_string()),
            ]
        );
        // Each mailbox went with its account; passwords too.
        assert_eq!(mail_texts(&store, "ann"), ["m0"]);
        assert_eq!(mail_texts(&store, "οδοσ"), ["m1", "m3"]);
        assert_eq!(mail_texts(&store, "οδοσ (clash)"), ["m2"]);
        assert_eq!(store.account("οδοσ").unwrap().unwrap().1, "hash of ΟΔΟΣ");
        assert_eq!(
            store.account("οδοσ (clash)").unwrap().unwrap().1,
            "hash of οδοσ"
        );
        // Mail of removed accounts leaves the mailboxes (not history), so Straße, whose key is
        // now a removed account's, does not get that account's mail.
        assert!(mail_texts(&store, "gone").is_empty());
        assert!(mail_texts(&store, "strasse").is_empty());
        assert_eq!(store.all().unwrap().len(), 6);
        let version: i64 = store
            .lock()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        // Opening it again changes nothing.
        drop(store);
        let again = Store::open(path.to_str().unwrap(), Sync::Normal, 0).unwrap();
        let mut reopened = again.accounts().unwrap();
        reopened.sort();
        assert_eq!(reopened, accounts);
        assert_eq!(mail_texts(&again, "οδοσ"), ["m1", "m3"]);
    }

    #[test]
    fn a_new_database_starts_at_the_current_version() {
        let store = Store::open(":memory:", Sync::Normal, 0).unwrap();
        let version: i64 = store
            .lock()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn accounts_and_mailboxes() {
        let store = Store::open(":memory:", Sync::Normal, 0).unwrap();
        assert!(store.create_account("ann", "Ann", "h1").unwrap());
        assert!(!store.create_account("ann", "ANN", "h2").unwrap());
        assert_eq!(
            store.account("ann").unwrap(),
            Some(("Ann".to_string(), "h1".to_string()))
        );
        assert_eq!(store.account("bob").unwrap(), None);
        assert!(store.set_password("ann", "h3").unwrap());
        assert!(!store.set_password("bob", "h3").unwrap());
        assert_eq!(store.account("ann").unwrap().unwrap().1, "h3");
        assert_eq!(
            store.accounts().unwrap(),
            [("ann".to_string(), "Ann".to_string())]
        );

        let (committed_tx, mut committed_rx) = mpsc::unbounded_channel();
        let mut writer = store.spawn_writer::<()>(committed_tx).unwrap();
        for (i, mailbox) in [Some("ann"), None, Some("ann"), Some("cat")]
            .into_iter()
            .enumerate()
        {
            let mut record = say("#a", &format!("m{i}"));
            record.room = None;
            record.kind = Kind::Private;
            record.to = mailbox.map(str::to_string);
            writer
                .submit(Pending {
                    author: (),
                    record,
                    is_mail: mailbox.is_some(),
                })
                .unwrap();
        }
        writer.finish();
        let mut ids = Vec::new();
        while let Ok(batch) = committed_rx.try_recv() {
            assert!(batch.error.is_none());
            ids.extend(batch.items.iter().map(|item| item.record.id));
        }
        let mail = store.mail("ann", i64::MAX).unwrap();
        let texts: Vec<_> = mail.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["m0", "m2"]);
        assert_eq!(mail[0].kind, Kind::Private);
        assert_eq!(store.mail_count("ann", i64::MAX).unwrap(), 2);
        // Mail newer than what the hub has delivered is left for the hub.
        assert_eq!(store.mail("ann", ids[0]).unwrap().len(), 1);
        assert_eq!(store.mail_count("ann", ids[1]).unwrap(), 1);
        store.remove_mail(&[mail[0].id, mail[1].id]).unwrap();
        assert!(store.mail("ann", i64::MAX).unwrap().is_empty());
        assert_eq!(store.mail_count("cat", i64::MAX).unwrap(), 1);
        // The messages themselves stay in history.
        assert_eq!(store.all().unwrap().len(), 4);
    }

    #[test]
    fn read_queries_are_compiled_once_and_use_their_indexes() {
        let store = Store::open(":memory:", Sync::Normal, 0).unwrap();
        let (committed_tx, _committed_rx) = mpsc::unbounded_channel();
        let mut writer = store.spawn_writer::<()>(committed_tx).unwrap();
        for i in 0..40 {
            let mut record = say(if i % 2 == 0 { "#a" } else { "#b" }, "hi");
            let is_mail = i % 3 == 0;
            if is_mail {
                record.room = None;
                record.kind = Kind::Private;
                record.to = Some(if i % 2 == 0 { "ann" } else { "bob" }.into());
            }
            writer
                .submit(Pending {
                    author: (),
                    record,
                    is_mail,
                })
                .unwrap();
        }
        writer.finish();
        // Different values for every parameter, call after call.
        for (i, (room, nick)) in [("#a", "ann"), ("#b", "bob"), ("#a", "bob")]
            .into_iter()
            .enumerate()
        {
            let up_to = 30 + i as i64;
            store.recent(room, 5 + i, None, up_to).unwrap();
            store.recent(room, 3, Some(20 - i as i64), up_to).unwrap();
            store.mail(nick, up_to).unwrap();
            store.mail_count(nick, up_to).unwrap();
        }
        let conn = store.lock();
        for (sql, index) in [
            (RECENT_SQL, "messages_by_room"),
            (MAIL_SQL, "mail_by_recipient"),
            (MAIL_COUNT_SQL, "mail_by_recipient"),
        ] {
            let statement = conn.prepare_cached(sql).unwrap();
            let recompiled = statement.get_status(rusqlite::StatementStatus::RePrepare);
            assert_eq!(recompiled, 0, "{sql}");
            let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            for i in 1..=explain.parameter_count() {
                explain.raw_bind_parameter(i, 1).unwrap();
            }
            let mut plan = Vec::<String>::new();
            let mut rows = explain.raw_query();
            while let Some(row) = rows.next().unwrap() {
                plan.push(row.get(3).unwrap());
            }
            assert!(
                plan.iter().any(|step| step.contains(index)),
                "{sql}: {plan:?}"
            );
        }
    }

    #[test]
    fn unopenable_database_is_a_clear_error() {
        let err = Store::open("/nonexistent-dir/x/h.db", Sync::Normal, 0).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x/h.db"), "{err}");
    }
}
