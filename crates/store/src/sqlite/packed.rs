//! A book packed into a few dozen bytes: the account's standing, then its id,
//! then the rest of the book, with integers as variable-length numbers.
//!
//! A typical account (no name, no metadata, one lot, no holds) packs into
//! about 80 bytes, against several hundred as Rust values, which is what lets
//! a store keep every account's book in memory. Unpacking gives back exactly
//! the book that was packed.

use ledger::{
    Account, AccountId, Amount, Book, ExternalId, Hold, HoldId, HoldStatus, Leg, Lot, LotId,
    MICROS_PER_SECOND, Metadata, Source, Standing, Timestamp,
};

/// Instants in the header are kept as whole seconds after this one
/// (2020-01-01T00:00:00Z), which a `u32` counts until the year 2156.
const BASE_MICROS: i64 = 1_577_836_800 * MICROS_PER_SECOND;

/// Bytes before the account id: the standing's span in seconds (two `u32`),
/// its headroom and its available balance (two `i64`).
const HEADER_LEN: usize = 24;

/// Where the account id starts: after the header and its length byte.
const ID_AT: usize = HEADER_LEN + 1;

const HOLD_STATUSES: [HoldStatus; 4] = [
    HoldStatus::Pending,
    HoldStatus::Committed,
    HoldStatus::Released,
    HoldStatus::Expired,
];

/// A packed book. Two are equal when they are of the same account, so that a
/// set of them holds one book per account.
#[derive(Clone)]
pub struct Packed(Box<[u8]>);

impl PartialEq for Packed {
    fn eq(&self, other: &Packed) -> bool {
        self.id() == other.id()
    }
}

impl Eq for Packed {}

impl Packed {
    /// Packs `book` with its standing at `now`.
    pub fn new(book: &Book, now: Timestamp) -> Packed {
        Packed::with_standing(book, &book.standing(now))
    }

    fn with_standing(book: &Book, standing: &Standing) -> Packed {
        thread_local! {
            // Packed here, then copied into an allocation of exactly its size.
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with_borrow_mut(|out| {
            out.clear();
            out.extend_from_slice(&header(standing));
            let id = book.account.id.as_str().as_bytes();
            // Account ids are at most 128 bytes (`ledger::NAME_ID_LEN_MAX`).
            out.push(u8::try_from(id.len()).expect("an account id fits in 255 bytes"));
            out.extend_from_slice(id);
            pack_body(book, out);
            Packed(Box::from(out.as_slice()))
        })
    }

    /// The account id.
    pub fn id(&self) -> &str {
        let len = usize::from(self.0[HEADER_LEN]);
        // Written from a `&str` by `Packed::new`.
        std::str::from_utf8(&self.0[ID_AT..ID_AT + len]).unwrap_or("")
    }

    /// Bytes taken, as an allocator rounds them.
    pub fn footprint(&self) -> usize {
        self.0.len().next_multiple_of(16)
    }

    /// The standing packed with the book, if it covers `now`. Its span is
    /// rounded inward to whole seconds: a shorter span only sends more checks
    /// to the book.
    pub fn standing(&self, now: Timestamp) -> Option<Standing> {
        let word = |at: usize| u32::from_le_bytes(self.0[at..at + 4].try_into().expect("4 bytes"));
        let wide = |at: usize| i64::from_le_bytes(self.0[at..at + 8].try_into().expect("8 bytes"));
        let (from_secs, until_secs) = (word(0), word(4));
        if from_secs >= until_secs {
            return None;
        }
        let instant =
            |secs: u32| Timestamp::from_micros(BASE_MICROS + i64::from(secs) * MICROS_PER_SECOND);
        let standing = Standing {
            from: instant(from_secs),
            until: instant(until_secs),
            headroom_micros: wide(8),
            available: Amount::from_micros(wide(16)),
        };
        standing.covers(now).then_some(standing)
    }

    /// The book.
    pub fn book(&self) -> Book {
        let mut reader = Reader {
            bytes: &self.0,
            at: ID_AT + usize::from(self.0[HEADER_LEN]),
        };
        let id = AccountId::parse(self.id()).expect("packed from an account id");
        // Packed by `Packed::new` from a valid book: reading it back cannot
        // fail unless memory is corrupt.
        unpack_body(&mut reader, id).expect("a packed book unpacks")
    }
}

impl std::hash::Hash for Packed {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As the id would hash, so that a set of packed books can be looked
        // up by id (see the `Borrow` below).
        self.id().hash(state);
    }
}

impl std::borrow::Borrow<str> for Packed {
    fn borrow(&self) -> &str {
        self.id()
    }
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed({:?}, {} bytes)", self.id(), self.0.len())
    }
}

/// The standing as a fixed header, its span rounded inward to whole seconds
/// and clamped to what a `u32` of seconds counts; an empty span if nothing
/// of it is left.
fn header(standing: &Standing) -> [u8; HEADER_LEN] {
    let from = standing.from.micros().saturating_sub(BASE_MICROS);
    let until = standing.until.micros().saturating_sub(BASE_MICROS);
    let from_secs = (from.max(0).saturating_add(MICROS_PER_SECOND - 1) / MICROS_PER_SECOND)
        .min(i64::from(u32::MAX));
    let until_secs = (until / MICROS_PER_SECOND).clamp(0, i64::from(u32::MAX));
    let (from_secs, until_secs) = if from_secs < until_secs {
        (from_secs as u32, until_secs as u32)
    } else {
        (0, 0)
    };
    let mut out = [0u8; HEADER_LEN];
    out[0..4].copy_from_slice(&from_secs.to_le_bytes());
    out[4..8].copy_from_slice(&until_secs.to_le_bytes());
    out[8..16].copy_from_slice(&standing.headroom_micros.to_le_bytes());
    out[16..24].copy_from_slice(&standing.available.micros().to_le_bytes());
    out
}

// Flag bits.
const HAS_NAME: u8 = 1;
const HAS_METADATA: u8 = 2;
const HAS_EXPIRY: u8 = 4;
const HAS_VOIDED: u8 = 8;
const HAS_COMMITTED: u8 = 16;
const HAS_RESOLVED: u8 = 32;
const HAS_EXTERNAL_ID: u8 = 64;

fn pack_body(book: &Book, out: &mut Vec<u8>) {
    let account = &book.account;
    let metadata = account.metadata != Metadata::empty();
    out.push(flag(account.name.is_some(), HAS_NAME) | flag(metadata, HAS_METADATA));
    if let Some(name) = &account.name {
        put_text(out, name);
    }
    if metadata {
        put_text(out, account.metadata.as_str());
    }
    put_int(out, account.overdraft_limit.micros());
    put_int(out, account.debt.micros());
    let base = account.created_at.micros();
    put_int(out, base);

    put_len(out, book.lots().len());
    for lot in book.lots() {
        let metadata = lot.metadata != Metadata::empty();
        out.push(
            flag(lot.expires_at.is_some(), HAS_EXPIRY)
                | flag(lot.voided_at.is_some(), HAS_VOIDED)
                | flag(metadata, HAS_METADATA)
                | flag(lot.external_id.is_some(), HAS_EXTERNAL_ID),
        );
        put_int(out, lot.id.0);
        out.push(source_index(lot.source));
        out.push(lot.priority);
        put_int(out, lot.amount.micros());
        put_int(out, lot.remaining.micros());
        // Instants as differences: a lot is created after its account, and
        // usually takes effect when it is created.
        let created = lot.created_at.micros();
        put_int(out, created.wrapping_sub(base));
        put_int(out, lot.effective_at.micros().wrapping_sub(created));
        if let Some(expires) = lot.expires_at {
            put_int(out, expires.micros().wrapping_sub(created));
        }
        if let Some(voided) = lot.voided_at {
            put_int(out, voided.micros().wrapping_sub(created));
        }
        if metadata {
            put_text(out, lot.metadata.as_str());
        }
        if let Some(external_id) = &lot.external_id {
            put_text(out, external_id.as_str());
        }
    }

    put_len(out, book.holds().len());
    for hold in book.holds() {
        let metadata = hold.metadata != Metadata::empty();
        out.push(
            flag(hold.committed_amount.is_some(), HAS_COMMITTED)
                | flag(hold.resolved_at.is_some(), HAS_RESOLVED)
                | flag(metadata, HAS_METADATA),
        );
        put_int(out, hold.id.0);
        put_int(out, hold.amount.micros());
        out.push(status_index(hold.status));
        let created = hold.created_at.micros();
        put_int(out, created.wrapping_sub(base));
        put_int(out, hold.expires_at.micros().wrapping_sub(created));
        if let Some(committed) = hold.committed_amount {
            put_int(out, committed.micros());
        }
        if let Some(resolved) = hold.resolved_at {
            put_int(out, resolved.micros().wrapping_sub(created));
        }
        put_len(out, hold.legs.len());
        for leg in &hold.legs {
            put_int(out, leg.lot.0);
            put_int(out, leg.amount.micros());
        }
        if metadata {
            put_text(out, hold.metadata.as_str());
        }
    }
}

fn unpack_body(r: &mut Reader<'_>, id: AccountId) -> Option<Book> {
    let flags = r.byte()?;
    let name = if flags & HAS_NAME != 0 {
        Some(r.text()?.to_owned())
    } else {
        None
    };
    let metadata = r.metadata(flags)?;
    let overdraft_limit = Amount::from_micros(r.int()?);
    let debt = Amount::from_micros(r.int()?);
    let base = r.int()?;
    let account = Account {
        id: id.clone(),
        name,
        metadata,
        overdraft_limit,
        debt,
        created_at: Timestamp::from_micros(base),
    };

    let count = r.len()?;
    let mut lots = Vec::with_capacity(count);
    for _ in 0..count {
        let flags = r.byte()?;
        let lot_id = LotId(r.int()?);
        let source = *Source::ALL.get(usize::from(r.byte()?))?;
        let priority = r.byte()?;
        let amount = Amount::from_micros(r.int()?);
        let remaining = Amount::from_micros(r.int()?);
        let created = base.wrapping_add(r.int()?);
        let effective_at = Timestamp::from_micros(created.wrapping_add(r.int()?));
        let expires_at = r.instant_if(flags & HAS_EXPIRY != 0, created)?;
        let voided_at = r.instant_if(flags & HAS_VOIDED != 0, created)?;
        lots.push(Lot {
            id: lot_id,
            account: id.clone(),
            source,
            priority,
            amount,
            remaining,
            effective_at,
            expires_at,
            voided_at,
            created_at: Timestamp::from_micros(created),
            metadata: r.metadata(flags)?,
            external_id: if flags & HAS_EXTERNAL_ID != 0 {
                Some(ExternalId::parse(r.text()?).ok()?)
            } else {
                None
            },
        });
    }

    let count = r.len()?;
    let mut holds = Vec::with_capacity(count);
    for _ in 0..count {
        let flags = r.byte()?;
        let hold_id = HoldId(r.int()?);
        let amount = Amount::from_micros(r.int()?);
        let status = *HOLD_STATUSES.get(usize::from(r.byte()?))?;
        let created = base.wrapping_add(r.int()?);
        let expires_at = Timestamp::from_micros(created.wrapping_add(r.int()?));
        let committed_amount = if flags & HAS_COMMITTED != 0 {
            Some(Amount::from_micros(r.int()?))
        } else {
            None
        };
        let resolved_at = r.instant_if(flags & HAS_RESOLVED != 0, created)?;
        let legs_count = r.len()?;
        let mut legs = Vec::with_capacity(legs_count);
        for _ in 0..legs_count {
            legs.push(Leg {
                lot: LotId(r.int()?),
                amount: Amount::from_micros(r.int()?),
            });
        }
        holds.push(Hold {
            id: hold_id,
            account: id.clone(),
            amount,
            legs,
            status,
            committed_amount,
            created_at: Timestamp::from_micros(created),
            expires_at,
            resolved_at,
            metadata: r.metadata(flags)?,
        });
    }
    (r.at == r.bytes.len()).then_some(())?;
    Book::new(account, lots, holds).ok()
}

fn flag(set: bool, bit: u8) -> u8 {
    if set { bit } else { 0 }
}

fn source_index(source: Source) -> u8 {
    Source::ALL
        .iter()
        .position(|s| *s == source)
        .expect("every source is in Source::ALL") as u8
}

fn status_index(status: HoldStatus) -> u8 {
    HOLD_STATUSES
        .iter()
        .position(|s| *s == status)
        .expect("every status is listed") as u8
}

/// A signed integer, zigzag-mapped so that small magnitudes of either sign
/// take few bytes, then seven bits per byte.
fn put_int(out: &mut Vec<u8>, value: i64) {
    put_varint(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    put_varint(out, len as u64);
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_len(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

/// Reads what `pack_body` wrote; `None` on anything it could not have written.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn int(&mut self) -> Option<i64> {
        let raw = self.varint()?;
        Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.varint()?).ok()
    }

    fn text(&mut self) -> Option<&'a str> {
        let len = self.len()?;
        let end = self.at.checked_add(len)?;
        let text = std::str::from_utf8(self.bytes.get(self.at..end)?).ok()?;
        self.at = end;
        Some(text)
    }

    fn metadata(&mut self, flags: u8) -> Option<Metadata> {
        if flags & HAS_METADATA == 0 {
            return Some(Metadata::empty());
        }
        Metadata::from_json_object(self.text()?.to_owned())
    }

    /// An instant written as a difference from `from`, if `present`.
    fn instant_if(&mut self, present: bool, from: i64) -> Option<Option<Timestamp>> {
        if !present {
            return Some(None);
        }
        Some(Some(Timestamp::from_micros(from.wrapping_add(self.int()?))))
    }
}

/// Shared by the tests of the packing and of the books.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ledger::NAME_ID_LEN_MAX;
    use proptest::prelude::*;

    pub(crate) fn account(id: &str) -> Account {
        Account {
            id: AccountId::parse(id).unwrap(),
            name: None,
            metadata: Metadata::empty(),
            overdraft_limit: Amount::ZERO,
            debt: Amount::ZERO,
            created_at: Timestamp::from_secs(1_800_000_000),
        }
    }

    pub(crate) fn lot(account: &Account, id: i64, remaining: i64) -> Lot {
        Lot {
            id: LotId(id),
            account: account.id.clone(),
            source: Source::Purchase,
            priority: 50,
            amount: Amount::credits(1_000_000_000),
            remaining: Amount::credits(remaining),
            effective_at: account.created_at,
            expires_at: None,
            voided_at: None,
            created_at: account.created_at,
            metadata: Metadata::empty(),
            external_id: None,
        }
    }

    /// An account as the benchmark opens it: one lot, nothing else.
    pub(crate) fn typical(id: &str) -> Book {
        let account = account(id);
        let lots = vec![lot(&account, 1_234_567, 999_999_000)];
        Book::new(account, lots, Vec::new()).unwrap()
    }

    #[test]
    fn a_typical_account_packs_into_under_a_hundred_bytes() {
        let book = typical("scale-s123456");
        let packed = Packed::new(&book, Timestamp::from_secs(1_800_000_100));
        assert!(packed.0.len() < 100, "{} bytes", packed.0.len());
        assert_eq!(packed.id(), "scale-s123456");
        assert_eq!(packed.book(), book);
    }

    #[test]
    fn the_packed_standing_answers_within_its_span_rounded_to_seconds() {
        let account = account("a");
        let start = account.created_at;
        let mut expiring = lot(&account, 1, 5);
        expiring.expires_at = Some(Timestamp::from_micros(
            start.plus_secs(100).micros() + 500_000,
        ));
        let book = Book::new(account, vec![expiring], Vec::new()).unwrap();
        let now = start.plus_secs(10);
        let packed = Packed::new(&book, now);
        let standing = packed.standing(now).unwrap();
        assert_eq!(standing.available, Amount::credits(5));
        assert_eq!(
            (standing.from, standing.until),
            (start, start.plus_secs(100))
        );
        // Past the rounded end, and before the start: the book must answer.
        assert_eq!(packed.standing(start.plus_secs(100)), None);
        assert_eq!(
            packed.standing(Timestamp::from_micros(start.micros() - 1)),
            None
        );
    }

    #[test]
    fn spans_at_the_ends_of_time_are_clamped_or_dropped() {
        let forever = Timestamp::from_micros(i64::MAX);
        let dawn = Timestamp::from_micros(i64::MIN);
        let standing = |from, until| Standing {
            from,
            until,
            headroom_micros: 1,
            available: Amount::from_micros(1),
        };
        let open = header(&standing(dawn, forever));
        assert_eq!(u32::from_le_bytes(open[0..4].try_into().unwrap()), 0);
        assert_eq!(u32::from_le_bytes(open[4..8].try_into().unwrap()), u32::MAX);
        // Nothing of a span before 2020 or at the end of time is left.
        assert_eq!(header(&standing(dawn, Timestamp::EPOCH))[0..8], [0; 8]);
        let end = Timestamp::from_micros(i64::MAX - 5);
        assert_eq!(header(&standing(end, forever))[0..8], [0; 8]);
    }

    fn instant() -> impl Strategy<Value = Timestamp> {
        prop_oneof![
            any::<i64>(),
            1_500_000_000_000_000i64..2_500_000_000_000_000,
        ]
        .prop_map(Timestamp::from_micros)
    }

    fn metadata() -> impl Strategy<Value = Metadata> {
        prop_oneof![
            Just(Metadata::empty()),
            "[a-z\"{}:, ]{0,40}".prop_map(|t| Metadata::from_json_object(t).unwrap()),
        ]
    }

    fn amount() -> impl Strategy<Value = Amount> {
        prop_oneof![any::<i64>(), 0i64..1_000_000_000].prop_map(Amount::from_micros)
    }

    prop_compose! {
        fn lot_of(id: AccountId)(
            lot_id in any::<i64>(), source in 0..Source::ALL.len(), priority in any::<u8>(),
            amount in amount(), remaining in amount(), effective_at in instant(),
            expires_at in proptest::option::of(instant()),
            voided_at in proptest::option::of(instant()),
            created_at in instant(), metadata in metadata(),
            external_id in proptest::option::of("[!-~]{1,40}"),
        ) -> Lot {
            Lot {
                id: LotId(lot_id), account: id.clone(), source: Source::ALL[source], priority,
                amount, remaining, effective_at, expires_at, voided_at, created_at, metadata,
                external_id: external_id.map(|e| ExternalId::parse(&e).unwrap()),
            }
        }
    }

    prop_compose! {
        fn hold_of(id: AccountId, lots: Vec<LotId>)(
            hold_id in any::<i64>(), amount in amount(), status in 0..HOLD_STATUSES.len(),
            committed_amount in proptest::option::of(amount()), created_at in instant(),
            expires_at in instant(), resolved_at in proptest::option::of(instant()),
            legs in proptest::collection::vec(
                (proptest::sample::select(if lots.is_empty() { vec![LotId(0)] } else { lots.clone() }), amount()),
                0..3,
            ),
            metadata in metadata(),
        ) -> Hold {
            // A pending hold's legs must name loaded lots; other holds' need not.
            let status = HOLD_STATUSES[status];
            let legs = if lots.is_empty() && status == HoldStatus::Pending { Vec::new() } else { legs };
            Hold {
                id: HoldId(hold_id), account: id.clone(), amount,
                legs: legs.into_iter().map(|(lot, amount)| Leg { lot, amount }).collect(),
                status, committed_amount, created_at, expires_at, resolved_at, metadata,
            }
        }
    }

    fn book() -> impl Strategy<Value = Book> {
        (
            // An id made only of dots is no id.
            proptest::string::string_regex(&format!("[A-Za-z0-9_.:-]{{1,{NAME_ID_LEN_MAX}}}"))
                .unwrap()
                .prop_filter("not only dots", |id| !id.bytes().all(|b| b == b'.')),
            proptest::option::of("[ -~]{0,30}"),
            metadata(),
            amount(),
            amount(),
            instant(),
        )
            .prop_flat_map(|(id, name, metadata, overdraft_limit, debt, created_at)| {
                let id = AccountId::parse(&id).unwrap();
                let account = Account {
                    id: id.clone(),
                    name,
                    metadata,
                    overdraft_limit,
                    debt,
                    created_at,
                };
                let lots = proptest::collection::vec(lot_of(id.clone()), 0..4);
                (Just(account), lots)
            })
            .prop_flat_map(|(account, lots)| {
                let ids: Vec<LotId> = lots.iter().map(|l| l.id).collect();
                let holds = proptest::collection::vec(hold_of(account.id.clone(), ids), 0..3);
                (Just(account), Just(lots), holds)
            })
            .prop_filter_map("a valid book", |(account, lots, holds)| {
                Book::new(account, lots, holds).ok()
            })
    }

    /// Books with lots whose amounts keep the ledger's own invariants, so
    /// that the book can answer for its standing.
    fn plausible_book() -> impl Strategy<Value = Book> {
        (
            proptest::collection::vec(
                (
                    1i64..1_000_000_000_000,
                    0u8..=100,
                    0i64..600,
                    proptest::option::of(1i64..600),
                    proptest::bool::ANY,
                ),
                0..4,
            ),
            0i64..1_000_000,
            0i64..1_000_000,
        )
            .prop_map(|(lots, debt, overdraft)| {
                let mut account = account("a");
                account.debt = Amount::from_micros(debt);
                account.overdraft_limit = Amount::from_micros(overdraft);
                let start = account.created_at.micros();
                let lots = lots
                    .into_iter()
                    .enumerate()
                    .map(|(i, (amount, priority, effective, expires, spent))| {
                        let mut lot = lot(&account, i as i64 + 1, 0);
                        lot.amount = Amount::from_micros(amount);
                        lot.remaining =
                            Amount::from_micros(if spent { amount / 3 } else { amount });
                        lot.priority = priority;
                        // Instants a few minutes apart, with sub-second parts.
                        lot.effective_at = Timestamp::from_micros(start + effective * 777_777);
                        lot.expires_at = expires.map(|e| {
                            Timestamp::from_micros(lot.effective_at.micros() + e * 1_234_567)
                        });
                        lot
                    })
                    .collect();
                Book::new(account, lots, Vec::new()).unwrap()
            })
    }

    proptest! {
        #[test]
        fn a_packed_book_unpacks_to_the_same_book(book in book()) {
            let standing = Standing {
                from: Timestamp::EPOCH,
                until: Timestamp::EPOCH,
                headroom_micros: 0,
                available: Amount::ZERO,
            };
            let packed = Packed::with_standing(&book, &standing);
            prop_assert_eq!(packed.id(), book.account.id.as_str());
            prop_assert_eq!(packed.book(), book);
        }

        #[test]
        fn the_packed_standing_is_the_books_own_answer_wherever_it_covers(
            book in plausible_book(),
            packed_at in 0i64..1_000_000_000,
            asked_at in 0i64..1_000_000_000,
        ) {
            let start = book.account.created_at.micros();
            let (packed_at, asked_at) = (
                Timestamp::from_micros(start + packed_at),
                Timestamp::from_micros(start + asked_at),
            );
            let packed = Packed::new(&book, packed_at);
            prop_assert_eq!(packed.book(), book.clone());
            if let Some(kept) = packed.standing(asked_at) {
                let fresh = book.standing(asked_at);
                prop_assert_eq!(kept.headroom_micros, fresh.headroom_micros);
                prop_assert_eq!(kept.available, fresh.available);
                prop_assert!(fresh.from <= kept.from && kept.until <= fresh.until);
            }
            // Within the whole seconds of its own span, it always answers.
            let own = book.standing(packed_at);
            let inside = Timestamp::from_micros(
                (own.from.micros().max(start) / 1_000_000 + 1) * 1_000_000,
            );
            if inside.micros() + 1_000_000 <= own.until.micros() {
                prop_assert!(packed.standing(inside).is_some());
            }
        }
    }
}
