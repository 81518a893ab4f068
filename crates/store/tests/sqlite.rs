//! What only the SQLite store does, against a real database file: books kept
//! in memory, lot rows written back late, crash images, two processes on one
//! file, locks and migrations. What every store does is in the suite.

mod common;

use std::sync::Arc;

use common::*;
use ledger::{Amount, HoldId, HoldTtl, Metadata, Reject, Timestamp, TxId};
use store::sqlite::{SqliteOptions, SqliteStore};
use store::{Clock, Command, ManualClock, Op, Outcome, Store, TxFilter};

struct Db {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    clock: ManualClock,
}

impl Db {
    fn new() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        Db {
            _dir: dir,
            path,
            clock: ManualClock::new(START),
        }
    }

    fn open(&self) -> SqliteStore {
        SqliteStore::open(SqliteOptions::new(&self.path), Arc::new(self.clock.clone())).unwrap()
    }
}

/// Readers fill the cache with books they load while the writer commits; the
/// writer decides from those books, so a stale one would let an account
/// spend twice. A cache far smaller than the accounts keeps evicting, so
/// readers keep finding entries absent and filling them. (The race itself is
/// too narrow to hit reliably here; the cache's own tests pin the rule.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn books_readers_cache_never_let_the_writer_overspend() {
    const ACCOUNTS: usize = 6;
    const CREDITS: i64 = 150;
    let db = Db::new();
    let mut options = SqliteOptions::new(&db.path);
    // Room for about two books: readers keep finding entries absent.
    options.books_budget_bytes = 300;
    let store = Arc::new(SqliteStore::open(options, Arc::new(db.clock.clone())).unwrap());
    for a in 0..ACCOUNTS {
        open_account(&store, &format!("acct{a}"), CREDITS).await;
    }
    let mut tasks = Vec::new();
    for n in 0..ACCOUNTS * CREDITS as usize * 2 {
        let store = store.clone();
        let account = format!("acct{}", n % ACCOUNTS);
        tasks.push(tokio::spawn(async move {
            store.book(id(&account), None).await.unwrap();
            run(&store, consume(&account, 1)).await.is_ok()
        }));
    }
    let mut spent = 0;
    for task in tasks {
        spent += usize::from(task.await.unwrap());
    }
    assert_eq!(spent, ACCOUNTS * CREDITS as usize);
    for a in 0..ACCOUNTS {
        assert_eq!(available(&store, &format!("acct{a}"), START).await, c(0));
    }
    assert!(store.audit().await.unwrap().is_clean());
}

/// The writer counts ids itself, so they follow one another with no gap,
/// across a restart too.
#[tokio::test]
async fn transaction_ids_follow_one_another_across_a_restart() {
    let db = Db::new();
    let store = db.open();
    open_account(&store, "a", 10).await;
    run(&store, consume("a", 3)).await.unwrap();
    store.close();
    let store = db.open();
    let Outcome::Consumed { tx, .. } = run(&store, consume("a", 1)).await.unwrap() else {
        panic!()
    };
    assert_eq!(tx.id.0, 3);
}

#[tokio::test]
async fn writes_from_another_process_do_not_collide_with_ours() {
    let db = Db::new();
    let server = db.open();
    open_account(&server, "a", 10).await;
    // A second store on the same file, as an admin command would open.
    let admin = db.open();
    run(&admin, grant("a", 5)).await.unwrap();
    admin.close();
    run(&server, grant("a", 5)).await.unwrap();
    assert_eq!(available(&server, "a", START).await, c(20));
    assert!(server.audit().await.unwrap().is_clean());
}

#[tokio::test]
async fn a_locked_database_is_unavailable_and_nothing_is_applied() {
    let db = Db::new();
    let options = SqliteOptions {
        busy_timeout: std::time::Duration::from_millis(100),
        ..SqliteOptions::new(&db.path)
    };
    let store = SqliteStore::open(options, Arc::new(db.clock.clone())).unwrap();
    open_account(&store, "a", 10).await;
    let other = rusqlite::Connection::open(&db.path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let refused = store.execute(Command::new(consume("a", 1))).await;
    assert!(
        matches!(refused, Err(store::StoreError::Unavailable(_))),
        "{refused:?}"
    );
    other.execute_batch("ROLLBACK").unwrap();
    assert_eq!(available(&store, "a", START).await, c(10));
    run(&store, consume("a", 1)).await.unwrap();
    assert_eq!(available(&store, "a", START).await, c(9));
    assert!(store.audit().await.unwrap().is_clean());
}

/// How many lots in the database match `condition`.
fn count_lots(db: &Db, condition: &str) -> i64 {
    let conn = rusqlite::Connection::open(&db.path).unwrap();
    conn.query_row(
        &format!("SELECT count(*) FROM lots WHERE {condition}"),
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// Lots whose `live` flag disagrees with what remains in them.
fn lots_out_of_step(db: &Db) -> i64 {
    count_lots(db, "live != (remaining > 0)")
}

fn live_lots(db: &Db) -> i64 {
    count_lots(db, "live")
}

/// A book read from the database, not from the store's cache.
async fn lots_read_afresh(db: &Db, account: &str) -> Vec<Amount> {
    let store = db.open();
    let book = store.book(id(account), None).await.unwrap().unwrap();
    store.close();
    book.lots().iter().map(|l| l.remaining).collect()
}

#[tokio::test]
async fn a_database_from_before_the_live_flag_is_migrated() {
    let db = Db::new();
    {
        let conn = rusqlite::Connection::open(&db.path).unwrap();
        conn.execute_batch(include_str!("../src/sqlite/migrations/0001_ledger.sql"))
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 0);
             INSERT INTO accounts VALUES ('old', 'Old Timer', '{}', 0, 0, 0);
             INSERT INTO lots VALUES (1, 'old', 'purchase', 50, 7000000, 0, 0, NULL, NULL, 0, '{}');
             INSERT INTO lots VALUES (2, 'old', 'purchase', 50, 9000000, 3000000, 0, NULL, NULL, 0, '{}');",
        )
        .unwrap();
    }
    assert_eq!(lots_read_afresh(&db, "old").await, vec![c(3)]);
    assert_eq!(lots_out_of_step(&db), 0);
    let store = db.open();
    run(&store, consume("old", 3)).await.unwrap();
    assert!(matches!(
        run(&store, consume("old", 1)).await,
        Err(Reject::InsufficientCredits { .. })
    ));
    store.close();
    assert_eq!(lots_out_of_step(&db), 0);
    assert!(lots_read_afresh(&db, "old").await.is_empty());
    // The accounts from before the search index are in it.
    let store = db.open();
    let found = store
        .search_accounts("TIMER".into(), None, 10)
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["old"]
    );
    store.close();
}

async fn checked(store: &SqliteStore, account: &str, now: Timestamp) -> Amount {
    let standing = store.standing(id(account), now).await.unwrap().unwrap();
    assert!(standing.covers(now));
    standing.available
}

#[tokio::test]
async fn a_write_by_another_process_clears_the_standings() {
    let db = Db::new();
    let server = db.open();
    open_account(&server, "a", 10).await;
    assert_eq!(checked(&server, "a", START).await, c(10));
    let admin = db.open();
    run(&admin, grant("a", 5)).await.unwrap();
    admin.close();
    // The server's writer looks before its next batch (and when idle).
    open_account(&server, "b", 1).await;
    assert_eq!(checked(&server, "a", START).await, c(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standings_are_preloaded_after_a_restart() {
    const ACCOUNTS: usize = 1_200;
    let db = Db::new();
    let store = Arc::new(db.open());
    let tasks: Vec<_> = (0..ACCOUNTS)
        .map(|a| {
            let store = store.clone();
            tokio::spawn(async move { open_account(&store, &format!("acct{a:04}"), 1).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    Arc::into_inner(store).unwrap().close();

    // Nothing reads or writes after the restart: the standings fill anyway,
    // more than one chunk of them.
    let store = db.open();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while store.preloading() {
        assert!(std::time::Instant::now() < deadline, "still preloading");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Done means every book is in.
    assert_eq!(store.books_kept(), ACCOUNTS);
    // The writer's first look for other processes finds none and keeps
    // them. It looks when idle and before every write, a pruning of keys
    // included, which it answers only once it has looked: the answer is the
    // look done, with no time to wait out.
    store.prune_idempotency(START).await.unwrap();
    assert_eq!(store.books_kept(), ACCOUNTS);
    assert_eq!(checked(&store, "acct0999", START).await, c(1));
    run(&store, consume("acct0999", 1)).await.unwrap();
    assert_eq!(checked(&store, "acct0999", START).await, c(0));
}

/// Every write goes through the writer, so that the books it keeps in
/// memory stay: a record write and the pruning of idempotency keys leave
/// them in place, where a write on any other connection makes the writer
/// drop them all.
#[tokio::test]
async fn a_record_write_and_pruning_leave_the_books_in_place() {
    let db = Db::new();
    let mut options = SqliteOptions::new(&db.path);
    options.preload_books = false;
    let store = SqliteStore::open(options, Arc::new(db.clock.clone())).unwrap();
    open_account(&store, "a", 10).await;
    open_account(&store, "b", 10).await;
    assert_eq!(store.books_kept(), 2);

    let put = store::records::RecordWrite::Put {
        kind: "setting".into(),
        id: "allow_free_user_purchase".into(),
        body: "false".into(),
        lookups: Vec::new(),
        expect: store::records::Expect::Any,
    };
    store.execute(Command::new(Op::Record(put))).await.unwrap();
    store.prune_idempotency(START.plus_secs(1)).await.unwrap();
    // The next batch looks for writes by others before it decides.
    run(&store, consume("a", 1)).await.unwrap();
    assert_eq!(store.books_kept(), 2);

    // A write behind the writer's back is one it must assume changed
    // anything: the books go, and only what is read again comes back.
    let other = rusqlite::Connection::open(&db.path).unwrap();
    other
        .execute(
            "INSERT INTO records (kind, id, version, body, created_at, updated_at) \
             VALUES ('setting', 'x', 1, '{}', 0, 0)",
            [],
        )
        .unwrap();
    run(&store, consume("a", 1)).await.unwrap();
    assert_eq!(store.books_kept(), 1);
}

#[tokio::test]
async fn a_store_for_one_command_preloads_nothing() {
    let db = Db::new();
    let store = db.open();
    open_account(&store, "a", 1).await;
    store.close();
    let mut options = SqliteOptions::new(&db.path);
    options.preload_books = false;
    let store = SqliteStore::open(options, Arc::new(db.clock.clone())).unwrap();
    // A preload raises this flag before `open` returns and lowers it only
    // once it has kept what it read: the flag down and no book kept mean
    // that none ran and none will, with nothing to wait for.
    assert!(!store.preloading());
    assert_eq!(store.books_kept(), 0);
    // A check keeps the standing it read.
    assert_eq!(checked(&store, "a", START).await, c(1));
    assert_eq!(store.books_kept(), 1);
}

/// The journal's index is by block of 65,536 ids, then account: an
/// account's transactions spread over several blocks, and over blocks that
/// hold none of them, are listed newest first, page by page, each once.
#[tokio::test]
async fn transactions_are_listed_across_blocks_of_the_journal() {
    const BLOCK: i64 = 1 << 16;
    let db = Db::new();
    let store = db.open();
    open_account(&store, "a", 100).await;
    open_account(&store, "b", 100).await;
    for _ in 0..3 {
        run(&store, consume("a", 1)).await.unwrap();
        run(&store, consume("b", 1)).await.unwrap();
    }
    store.close();
    // Copies of the rows so far, as if written in blocks 1 and 3: ids far
    // apart, with blocks 2 and 4 holding nothing of "a".
    let conn = rusqlite::Connection::open(&db.path).unwrap();
    for block in [1, 3] {
        conn.execute(
            "INSERT INTO transactions SELECT id + ?1, account_id, kind, amount, usage, \
               balance_after, postings, sources, created_at, metadata, lot_id, hold_id, \
               refund_of, feature_id, quantity, external_id, external_digest, reason, actor, \
               grant_source \
             FROM transactions WHERE id < ?2",
            [block * BLOCK, BLOCK],
        )
        .unwrap();
    }
    // The copies are for listing only: mark them as reflected in the lots'
    // rows, so that opening the store does not add them to the lots.
    conn.execute(
        "UPDATE lots_synced SET through_tx = (SELECT max(id) FROM transactions)",
        [],
    )
    .unwrap();
    let ids = |account: &str| -> Vec<i64> {
        let mut stmt = conn
            .prepare("SELECT id FROM transactions WHERE account_id = ?1 ORDER BY id DESC")
            .unwrap();
        stmt.query_map([account], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let filter = |account: &str, before: Option<TxId>, limit: usize| TxFilter {
        account: id(account),
        kinds: Vec::new(),
        sources: Vec::new(),
        from: None,
        to: None,
        before,
        limit,
    };
    let store = db.open();
    // Ids continue after the last block's: this one lands in block 3 too.
    run(&store, consume("a", 1)).await.unwrap();
    let expected = ids("a");
    assert_eq!(expected.len(), 3 * 4 + 1);
    assert!(expected[0] > 3 * BLOCK && expected.last() == Some(&1));
    for limit in [1, 2, 4, 7, 100] {
        let mut listed = Vec::new();
        let mut before = None;
        loop {
            let page = store
                .transactions(filter("a", before, limit))
                .await
                .unwrap();
            assert!(page.len() <= limit);
            assert!(page.iter().all(|tx| tx.account == id("a")));
            let Some(last) = page.last() else { break };
            before = Some(last.id);
            listed.extend(page.iter().map(|tx| tx.id.0));
        }
        assert_eq!(listed, expected, "pages of {limit}");
    }
    // A cursor inside a block that holds nothing newer of the account.
    let listed: Vec<i64> = store
        .transactions(filter("b", Some(TxId(2 * BLOCK)), 100))
        .await
        .unwrap()
        .iter()
        .map(|tx| tx.id.0)
        .collect();
    let below: Vec<i64> = ids("b").into_iter().filter(|&i| i < 2 * BLOCK).collect();
    assert_eq!(listed, below);
    assert_eq!(listed.len(), 2 * 4);
}

/// A store whose spent lots' rows wait for `lag` transactions, with no
/// checkpoints (so that a copy of the files is a crash image) and no books
/// in memory when `books` is false (so that every read and every decision
/// goes through the database).
fn open_lagging(db: &Db, lag: i64, books: bool) -> SqliteStore {
    open_lagging_at_most(db, lag, 1_000, books)
}

/// As [`open_lagging`], with at most `lagging_max` lots lagging at once.
fn open_lagging_at_most(db: &Db, lag: i64, lagging_max: usize, books: bool) -> SqliteStore {
    let options = SqliteOptions {
        lot_lag_txs: lag,
        lots_lagging_max: lagging_max,
        books_budget_bytes: if books { 1 << 20 } else { 0 },
        preload_books: false,
        checkpoint_interval: None,
        wal_autocheckpoint_pages: 1_000_000,
        ..SqliteOptions::new(&db.path)
    };
    SqliteStore::open(options, Arc::new(db.clock.clone())).unwrap()
}

/// What a lot's row says, read straight from the file: remaining credits,
/// and the last transaction it reflects.
fn lot_row(db: &Db, account: &str) -> (Amount, i64) {
    let conn = rusqlite::Connection::open(&db.path).unwrap();
    conn.query_row(
        "SELECT remaining, synced_tx FROM lots WHERE account_id = ?1",
        [account],
        |r| Ok((Amount::from_micros(r.get(0)?), r.get(1)?)),
    )
    .unwrap()
}

fn synced_through(db: &Db) -> i64 {
    let conn = rusqlite::Connection::open(&db.path).unwrap();
    conn.query_row("SELECT through_tx FROM lots_synced", [], |r| r.get(0))
        .unwrap()
}

fn last_tx(db: &Db) -> i64 {
    let conn = rusqlite::Connection::open(&db.path).unwrap();
    conn.query_row("SELECT max(id) FROM transactions", [], |r| r.get(0))
        .unwrap()
}

/// Copies the database and its WAL as they are on disk now, as a crash
/// would leave them; the store must be idle and must not checkpoint.
fn crash_image(db: &Db) -> Db {
    let image = Db::new();
    std::fs::copy(&db.path, &image.path).unwrap();
    let wal = |path: &std::path::Path| path.with_extension("db-wal");
    if wal(&db.path).exists() {
        std::fs::copy(wal(&db.path), wal(&image.path)).unwrap();
    }
    image.clock.set(db.clock.now());
    image
}

#[tokio::test]
async fn a_spent_lots_row_waits_and_every_read_adds_what_it_lacks() {
    let db = Db::new();
    let store = open_lagging(&db, 1_000, false);
    open_account(&store, "a", 100).await;
    for _ in 0..7 {
        run(&store, consume("a", 1)).await.unwrap();
    }
    // The row still says what the grant put in it...
    assert_eq!(lot_row(&db, "a").0, c(100));
    // ...and every read, with no book in memory, adds the journal after it.
    let lot = store.lots(id("a"), None, 10).await.unwrap().remove(0);
    assert_eq!(lot.remaining, c(93));
    assert_eq!(store.lot(lot.id).await.unwrap().unwrap().remaining, c(93));
    assert_eq!(available(&store, "a", START).await, c(93));
    assert!(store.audit().await.unwrap().is_clean());
    // The writer decides from the same reads: exactly 93 more go through.
    for _ in 0..93 {
        run(&store, consume("a", 1)).await.unwrap();
    }
    assert!(matches!(
        run(&store, consume("a", 1)).await,
        Err(Reject::InsufficientCredits { .. })
    ));
    // Emptying the lot is written at once: its live flag changed.
    assert_eq!(lot_row(&db, "a").0, c(0));
    assert_eq!(live_lots(&db), 0);
    store.close();
}

#[tokio::test]
async fn a_lagging_row_is_written_back_once_it_lags_and_at_close() {
    let db = Db::new();
    let store = open_lagging(&db, 4, true);
    open_account(&store, "a", 100).await;
    open_account(&store, "b", 100).await;
    run(&store, consume("a", 1)).await.unwrap();
    assert_eq!(lot_row(&db, "a").0, c(100));
    // Other accounts' transactions make "a" lag until it is written back.
    for _ in 0..6 {
        run(&store, consume("b", 1)).await.unwrap();
    }
    let (remaining, synced) = lot_row(&db, "a");
    assert_eq!(remaining, c(99));
    assert!(synced > 4, "{synced}");
    // What still waits is written back when the store closes.
    run(&store, consume("a", 2)).await.unwrap();
    assert_eq!(lot_row(&db, "a").0, c(99));
    store.close();
    assert_eq!(lot_row(&db, "a").0, c(97));
    assert_eq!(lot_row(&db, "b").0, c(94));
    assert_eq!(synced_through(&db), last_tx(&db));
}

#[tokio::test]
async fn after_a_crash_the_rows_are_brought_up_to_date_before_anything_is_decided() {
    let db = Db::new();
    let store = open_lagging(&db, 1_000, true);
    open_account(&store, "a", 100).await;
    open_account(&store, "b", 50).await;
    for _ in 0..5 {
        run(&store, consume("a", 2)).await.unwrap();
        run(&store, consume("b", 1)).await.unwrap();
    }
    let image = crash_image(&db);
    store.close();
    assert_eq!(lot_row(&image, "a").0, c(100));
    assert!(synced_through(&image) < last_tx(&image));

    let store = open_lagging(&image, 1_000, false);
    assert_eq!(lot_row(&image, "a"), (c(90), last_tx(&image)));
    assert_eq!(lot_row(&image, "b").0, c(45));
    assert_eq!(synced_through(&image), last_tx(&image));
    assert_eq!(available(&store, "a", START).await, c(90));
    assert!(store.audit().await.unwrap().is_clean());
    store.close();
}

#[tokio::test]
async fn two_processes_spending_from_one_lot_agree_on_what_is_left() {
    let db = Db::new();
    let server = open_lagging(&db, 1_000, true);
    open_account(&server, "a", 100).await;
    run(&server, consume("a", 10)).await.unwrap();
    // An admin command opens the same file while the server's row lags,
    // reads what is left, spends, and closes.
    let admin = open_lagging(&db, 1_000, true);
    assert_eq!(available(&admin, "a", START).await, c(90));
    run(&admin, consume("a", 20)).await.unwrap();
    admin.close();
    // The server's next batch sees the admin's spend.
    run(&server, consume("a", 30)).await.unwrap();
    assert_eq!(available(&server, "a", START).await, c(40));
    // And an admin that crashes with its row lagging: a crash image of the
    // file stands for it, reopened by a server that has written since.
    let admin = open_lagging(&db, 1_000, true);
    run(&admin, consume("a", 5)).await.unwrap();
    let image = crash_image(&db);
    admin.close();
    let server = open_lagging(&image, 1_000, true);
    run(&server, consume("a", 1)).await.unwrap();
    assert_eq!(available(&server, "a", START).await, c(34));
    assert!(server.audit().await.unwrap().is_clean());
    server.close();
    assert_eq!(lot_row(&image, "a").0, c(34));
}

/// A small generator of random numbers, seeded, so that a failure repeats.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The same random operations on a store whose lots' rows lag (a few
/// transactions, few at once, restarted and crashed along the way) and on
/// one that writes every change at once: every answer, balance and lot
/// agrees after every step, and both audits are clean at the end.
#[tokio::test]
async fn lagging_rows_change_no_answer_whatever_happens() {
    const ACCOUNTS: [&str; 3] = ["a", "b", "c"];
    for seed in [7u64, 1_234_567, 42_424_242] {
        let mut random = Random(seed);
        let mut lagging_db = Db::new();
        let plain_db = Db::new();
        let open = |db: &Db, lag: i64, books: bool| open_lagging_at_most(db, lag, 2, books);
        let mut lagging = open(&lagging_db, 3, true);
        let plain = open(&plain_db, 0, true);
        for account in ACCOUNTS {
            open_account(&lagging, account, 0).await;
            open_account(&plain, account, 0).await;
        }
        let mut holds: Vec<(HoldId, HoldId)> = Vec::new();
        for step in 0..300 {
            let account = ACCOUNTS[random.below(3) as usize];
            let amount = 1 + random.below(9) as i64;
            let ops: Vec<(Op, Op)> = match random.below(10) {
                0 | 1 => vec![(grant(account, amount * 3), grant(account, amount * 3))],
                2 => {
                    let hold = || Op::Hold {
                        account: id(account),
                        amount: c(amount),
                        ttl: HoldTtl::from_secs(60).unwrap(),
                        metadata: Metadata::empty(),
                    };
                    vec![(hold(), hold())]
                }
                3 if !holds.is_empty() => {
                    let (l, p) = holds.remove(random.below(holds.len() as u64) as usize);
                    if random.below(2) == 0 {
                        vec![(release(l), release(p))]
                    } else {
                        let commit = |hold| Op::Commit {
                            hold,
                            amount: c(1),
                            metadata: Metadata::empty(),
                        };
                        vec![(commit(l), commit(p))]
                    }
                }
                _ => vec![(consume(account, amount), consume(account, amount))],
            };
            for (on_lagging, on_plain) in ops {
                let (l, p) = (run(&lagging, on_lagging).await, run(&plain, on_plain).await);
                match (&l, &p) {
                    (Ok(Outcome::Held { hold: lh, .. }), Ok(Outcome::Held { hold: ph, .. })) => {
                        holds.push((lh.id, ph.id))
                    }
                    (Ok(_), Ok(_)) => {}
                    (Err(le), Err(pe)) => assert_eq!(le, pe, "seed {seed}, step {step}"),
                    _ => panic!("seed {seed}, step {step}: {l:?} against {p:?}"),
                }
            }
            lagging_db.clock.advance_secs(1);
            plain_db.clock.advance_secs(1);
            // Now and then a restart, a crash, or a store with no books in
            // memory, so that reads and decisions come from the rows.
            match random.below(25) {
                0 => {
                    lagging.close();
                    lagging = open(&lagging_db, 3, true);
                }
                1 => {
                    let image = crash_image(&lagging_db);
                    lagging.close();
                    lagging_db = image;
                    lagging = open(&lagging_db, 3, random.below(2) == 0);
                }
                _ => {}
            }
            let now = lagging_db.clock.now();
            for account in ACCOUNTS {
                let l = lagging.book(id(account), None).await.unwrap().unwrap();
                let p = plain.book(id(account), None).await.unwrap().unwrap();
                assert_eq!(l.balance(now), p.balance(now), "seed {seed}, step {step}");
                let l_lots = lagging.lots(id(account), None, 100).await.unwrap();
                let p_lots = plain.lots(id(account), None, 100).await.unwrap();
                let remaining = |lots: &[ledger::Lot]| -> Vec<Amount> {
                    lots.iter().map(|lot| lot.remaining).collect()
                };
                assert_eq!(
                    remaining(&l_lots),
                    remaining(&p_lots),
                    "seed {seed}, step {step}"
                );
            }
        }
        assert!(lagging.audit().await.unwrap().is_clean());
        assert!(plain.audit().await.unwrap().is_clean());
        lagging.close();
        plain.close();
        // Closed cleanly: nothing lags.
        assert_eq!(synced_through(&lagging_db), last_tx(&lagging_db));
    }
}

/// Consumes 1 credit `count` times from `account`, 250 at a time concurrently,
/// so that they share batches.
async fn consume_concurrently(store: &Arc<SqliteStore>, account: &'static str, count: usize) {
    for _ in 0..count / 250 {
        let tasks: Vec<_> = (0..250)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { run(&store, consume(account, 1)).await.unwrap() })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    }
}

/// The store-wide watermark says every row reflects the journal up to it:
/// it may rise past thousands of other transactions, never past a lot still
/// waiting to be written back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watermark_rises_but_never_past_a_waiting_lot() {
    let db = Db::new();
    let store = Arc::new(open_lagging(&db, 20_000, false));
    open_account(&store, "a", 100).await;
    open_account(&store, "b", 1_000_000).await;
    let before = last_tx(&db);
    run(&store, consume("a", 1)).await.unwrap();
    // Ten thousand transactions of another account, in concurrent batches.
    consume_concurrently(&store, "b", 40 * 250).await;
    // The watermark stays before the consume of "a", whose row still
    // waits: reads of it add that consume.
    assert!(synced_through(&db) <= before);
    assert_eq!(lot_row(&db, "a").0, c(100));
    assert_eq!(available(&store, "a", START).await, c(99));
    assert_eq!(
        store.lots(id("a"), None, 1).await.unwrap()[0].remaining,
        c(99)
    );
    // Written back after its lag, the watermark moves on.
    consume_concurrently(&store, "b", 50 * 250).await;
    assert_eq!(lot_row(&db, "a").0, c(99));
    assert!(synced_through(&db) > before + 20_000);
    assert!(store.audit().await.unwrap().is_clean());
    Arc::into_inner(store).unwrap().close();
}
