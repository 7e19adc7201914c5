//! The cache in front of the upstream servers: upstream replies for names
//! outside the cluster domain, kept for as long as their TTLs allow and no
//! longer, within fixed memory bounds.
//!
//! Pure: every call takes the current time (`now`) from the caller and nothing
//! here reads a clock, so tests drive time and the forwarder decides which
//! instant a reply was received at.
//!
//! What is kept (RFC 2308, RFC 1035 §3.2.1, RFC 2181 §8):
//! - Key: the question — owner name lowercased (RFC 4343: names compare
//!   case-insensitively), type and class. The EDNS DO and the CD bits are not part
//!   of the key: [`crate::forward`] never sets DO upstream, so no cached reply holds
//!   DNSSEC records one client asked for and another did not.
//! - Positive answers (NOERROR with records in the answer section): one entry
//!   holds the whole reply, so it lives as long as its shortest-lived record over
//!   all sections (a glue record must not outlive its own TTL), capped at
//!   `max_ttl` (3600 s by default, as CoreDNS's cache). An SOA in the authority
//!   section (a CNAME chain ending in no data) also bounds it by its MINIMUM field.
//! - Negative answers (NXDOMAIN, and NOERROR with an empty answer section, "NODATA")
//!   are kept for min(SOA TTL, SOA MINIMUM) of the SOA in the authority section
//!   (RFC 2308 §5), capped at `max_negative_ttl` (1800 s by default, as CoreDNS's
//!   denial cap). Without an SOA they are not kept (RFC 2308 §5: "Negative
//!   responses without SOA records SHOULD NOT be cached").
//! - Never kept: SERVFAIL and every other response code (RFC 2308 §7.1 allows up
//!   to five minutes for SERVFAIL; weft keeps none, so a recovered upstream is
//!   used at once — the forwarder's coalescing and in-flight bound protect the
//!   upstreams from a flood instead), truncated replies (TC=1: incomplete by
//!   definition, RFC 2181 §9), replies whose lifetime works out to 0 s (RFC 1035
//!   §3.2.1: TTL 0 is for the transaction at hand only), and replies larger than
//!   [`MAX_ENTRY_WIRE_BYTES`] on the wire.
//! - Served: every record's TTL is what was left at the time of the read —
//!   min(record TTL, entry lifetime) minus the whole seconds since the reply was
//!   stored (RFC 1035 §3.2.1; RFC 2181 §8) — and the entry is gone once its
//!   lifetime is over. A client never sees a TTL longer than weft keeps the entry.
//!
//! Bounds: at most `max_entries` entries (10,000 by default), split over up to
//! [`SHARDS`] shards, each a `std::sync::Mutex` held for one hash-map operation so
//! the per-core server sockets rarely wait on each other. A full shard evicts with
//! CLOCK (second chance), a cheap LRU approximation: every read marks its entry;
//! the clock hand clears marks and evicts the first unmarked (or expired) entry.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// Largest reply (wire bytes, as re-encoded for the cache) an entry may hold.
pub const MAX_ENTRY_WIRE_BYTES: usize = 4096;
/// Most shards a cache is split into.
pub const SHARDS: usize = 16;
/// Fewest entries a shard is sized for: small caches stay in one shard, so
/// their bound and eviction order are exact.
const MIN_PER_SHARD: usize = 64;

/// Default bound on the number of entries.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;
/// Default cap on a positive entry's lifetime (CoreDNS cache's default).
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(3600);
/// Default cap on a negative entry's lifetime (CoreDNS cache's default denial cap;
/// RFC 2308 §5 suggests one to three hours at most).
pub const DEFAULT_MAX_NEGATIVE_TTL: Duration = Duration::from_secs(1800);

/// What the cache is keyed by: lowercased fully-qualified name, type, class.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    name: Name,
    qtype: RecordType,
    qclass: DNSClass,
}

impl Key {
    pub(crate) fn of(q: &Query) -> Key {
        let mut name = q.name().to_lowercase();
        name.set_fqdn(true);
        Key {
            name,
            qtype: q.query_type(),
            qclass: q.query_class(),
        }
    }
}

/// The parts of an upstream reply that are served again.
#[derive(Debug, Clone)]
struct Entry {
    response_code: ResponseCode,
    recursion_available: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
    stored: Instant,
    /// Whole seconds the entry lives for (≥ 1).
    lifetime: u32,
}

impl Entry {
    fn age_secs(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.stored).as_secs()
    }

    fn is_live(&self, now: Instant) -> bool {
        self.age_secs(now) < u64::from(self.lifetime)
    }
}

struct Slot {
    key: Key,
    entry: Entry,
    /// Read since the clock hand last passed (CLOCK's reference bit).
    referenced: bool,
}

struct Shard {
    map: HashMap<Key, usize>,
    slots: Vec<Slot>,
    hand: usize,
    capacity: usize,
}

impl Shard {
    fn remove_at(&mut self, i: usize) {
        let removed = self.slots.swap_remove(i);
        self.map.remove(&removed.key);
        if let Some(moved) = self.slots.get(i) {
            self.map.insert(moved.key.clone(), i);
        }
    }
}

/// Counter values, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads that found nothing live.
    pub misses: u64,
    /// Live entries pushed out to make room.
    pub evictions: u64,
    /// Entries dropped because their lifetime was over.
    pub expired: u64,
    /// Replies stored (new or replacing).
    pub inserts: u64,
    /// Entries held now (live or not yet noticed as expired).
    pub entries: u64,
}

/// A bounded, TTL-honouring cache of upstream replies. `Sync`: share it by
/// reference or `Arc` between tasks.
pub struct Cache {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    max_ttl: u32,
    max_negative_ttl: u32,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    expired: AtomicU64,
    inserts: AtomicU64,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("shards", &self.shards.len())
            .field("max_ttl", &self.max_ttl)
            .field("max_negative_ttl", &self.max_negative_ttl)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for Cache {
    fn default() -> Self {
        Cache::new(
            DEFAULT_MAX_ENTRIES,
            DEFAULT_MAX_TTL,
            DEFAULT_MAX_NEGATIVE_TTL,
        )
    }
}

fn secs_u32(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while a shard was locked cannot leave it inconsistent in a way
    // that matters more than losing the cache: go on with what is there.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Cache {
    /// A cache of at most `max_entries` replies (0: caches nothing), positive
    /// ones kept at most `max_ttl`, negative ones at most `max_negative_ttl`
    /// (both in whole seconds).
    pub fn new(max_entries: usize, max_ttl: Duration, max_negative_ttl: Duration) -> Cache {
        let n = (max_entries / MIN_PER_SHARD).clamp(1, SHARDS);
        let shards = (0..n)
            .map(|i| {
                let capacity = max_entries / n + usize::from(i < max_entries % n);
                Mutex::new(Shard {
                    map: HashMap::with_capacity(capacity),
                    slots: Vec::with_capacity(capacity),
                    hand: 0,
                    capacity,
                })
            })
            .collect();
        Cache {
            shards,
            hasher: RandomState::new(),
            max_ttl: secs_u32(max_ttl),
            max_negative_ttl: secs_u32(max_negative_ttl),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        let h = self.hasher.hash_one(key);
        // `shards` is never empty (`new` makes at least one).
        let i = usize::try_from(h % self.shards.len() as u64).unwrap_or(0);
        &self.shards[i]
    }

    /// The stored reply for `q`, as a response to `q` (its name spelled as the
    /// caller spelled it) with every TTL decremented by the entry's age; `None`
    /// when nothing live is stored. The message has id 0, RD=1, no EDNS and
    /// AA=0 (it is a cached, not an authoritative, answer): the caller sets the
    /// id and whatever its client asked for.
    pub fn get(&self, q: &Query, now: Instant) -> Option<Message> {
        let key = Key::of(q);
        let found = {
            let mut shard = lock(self.shard(&key));
            match shard.map.get(&key).copied() {
                Some(i) if shard.slots[i].entry.is_live(now) => {
                    shard.slots[i].referenced = true;
                    Some(shard.slots[i].entry.clone())
                }
                Some(i) => {
                    shard.remove_at(i);
                    self.expired.fetch_add(1, Ordering::Relaxed);
                    None
                }
                None => None,
            }
        };
        match found {
            Some(entry) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(respond(q, &entry, now))
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Store `reply` as the answer to `q`, received at `now`, if the rules in
    /// the module documentation allow it; otherwise leave the cache as it is.
    /// Returns whether it was stored.
    pub fn put(&self, q: &Query, reply: &Message, now: Instant) -> bool {
        let Some(lifetime) = self.lifetime(reply) else {
            return false;
        };
        let entry = Entry {
            response_code: reply.response_code(),
            recursion_available: reply.recursion_available(),
            answers: reply.answers().to_vec(),
            authorities: reply.name_servers().to_vec(),
            additionals: reply.additionals().to_vec(),
            stored: now,
            lifetime,
        };
        match respond(q, &entry, now).to_vec() {
            Ok(wire) if wire.len() <= MAX_ENTRY_WIRE_BYTES => {}
            _ => return false,
        }
        let key = Key::of(q);
        let mut shard = lock(self.shard(&key));
        if shard.capacity == 0 {
            return false;
        }
        self.inserts.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = shard.map.get(&key).copied() {
            shard.slots[i].entry = entry;
            return true;
        }
        let slot = Slot {
            key: key.clone(),
            entry,
            referenced: false,
        };
        if shard.slots.len() < shard.capacity {
            let i = shard.slots.len();
            shard.slots.push(slot);
            shard.map.insert(key, i);
            return true;
        }
        // Full: CLOCK. At most two turns of the hand: the first clears every
        // mark, so the second finds an unmarked entry.
        let n = shard.slots.len();
        for _ in 0..2 * n {
            let i = if shard.hand < n { shard.hand } else { 0 };
            shard.hand = i + 1;
            let victim = &mut shard.slots[i];
            let live = victim.entry.is_live(now);
            if live && victim.referenced {
                victim.referenced = false;
                continue;
            }
            let old = std::mem::replace(victim, slot);
            shard.map.remove(&old.key);
            shard.map.insert(key, i);
            if live {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            } else {
                self.expired.fetch_add(1, Ordering::Relaxed);
            }
            return true;
        }
        false
    }

    /// How long `reply` may be kept, in whole seconds; `None`: not at all.
    fn lifetime(&self, reply: &Message) -> Option<u32> {
        if reply.message_type() != MessageType::Response
            || reply.op_code() != OpCode::Query
            || reply.truncated()
        {
            return None;
        }
        let soa_ttl = reply.name_servers().iter().find_map(|r| match r.data() {
            RData::SOA(soa) => Some(r.ttl().min(soa.minimum())),
            _ => None,
        });
        let negative = match reply.response_code() {
            ResponseCode::NXDomain => true,
            ResponseCode::NoError => reply.answers().is_empty(),
            _ => return None,
        };
        let ttl = if negative {
            // RFC 2308 §5: the SOA decides, and without one nothing is kept.
            soa_ttl?.min(self.max_negative_ttl)
        } else {
            let records = reply
                .answers()
                .iter()
                .chain(reply.name_servers())
                .chain(reply.additionals())
                .map(Record::ttl)
                .min()
                .unwrap_or(0);
            records.min(soa_ttl.unwrap_or(u32::MAX)).min(self.max_ttl)
        };
        (ttl > 0).then_some(ttl)
    }

    /// The counters so far and the number of entries held.
    pub fn stats(&self) -> CacheStats {
        let entries = self.shards.iter().map(|s| lock(s).slots.len() as u64).sum();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            inserts: self.inserts.load(Ordering::Relaxed),
            entries,
        }
    }
}

fn aged(records: &[Record], lifetime: u32, age: u32) -> Vec<Record> {
    records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.set_ttl(r.ttl().min(lifetime).saturating_sub(age));
            r
        })
        .collect()
}

/// The response to `q` an entry gives at `now`.
fn respond(q: &Query, entry: &Entry, now: Instant) -> Message {
    let age = u32::try_from(entry.age_secs(now)).unwrap_or(u32::MAX);
    let mut m = Message::new();
    m.set_id(0)
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .set_recursion_available(entry.recursion_available)
        .set_response_code(entry.response_code)
        .add_query(q.clone());
    m.insert_answers(aged(&entry.answers, entry.lifetime, age));
    m.insert_name_servers(aged(&entry.authorities, entry.lifetime, age));
    m.insert_additionals(aged(&entry.additionals, entry.lifetime, age));
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, CNAME, SOA};
    use std::net::Ipv4Addr;
    use std::str::FromStr;

    fn name(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn query(s: &str, t: RecordType) -> Query {
        Query::query(name(s), t)
    }

    fn reply(q: &Query, rcode: ResponseCode) -> Message {
        let mut m = Message::new();
        m.set_id(7)
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_recursion_available(true)
            .set_response_code(rcode)
            .add_query(q.clone());
        m
    }

    fn a(owner: &str, ttl: u32, last: u8) -> Record {
        Record::from_rdata(
            name(owner),
            ttl,
            RData::A(A(Ipv4Addr::new(192, 0, 2, last))),
        )
    }

    fn soa(zone: &str, ttl: u32, minimum: u32) -> Record {
        Record::from_rdata(
            name(zone),
            ttl,
            RData::SOA(SOA::new(
                name(&format!("ns.{zone}")),
                name(&format!("hostmaster.{zone}")),
                1,
                7200,
                900,
                1_209_600,
                minimum,
            )),
        )
    }

    fn positive(q: &Query, ttl: u32) -> Message {
        let mut m = reply(q, ResponseCode::NoError);
        m.add_answer(a(&q.name().to_string(), ttl, 1));
        m
    }

    fn cache() -> Cache {
        Cache::new(100, DEFAULT_MAX_TTL, DEFAULT_MAX_NEGATIVE_TTL)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn positive_answer_is_served_with_ttl_decremented_by_age() {
        let c = cache();
        let q = query("www.example.com.", RecordType::A);
        let t0 = Instant::now();
        assert!(c.put(&q, &positive(&q, 300), t0));
        let got = c.get(&q, t0 + secs(100)).unwrap();
        assert_eq!(got.answers().len(), 1);
        assert_eq!(got.answers()[0].ttl(), 200);
        assert_eq!(got.response_code(), ResponseCode::NoError);
        assert_eq!(got.queries(), &[q]);
    }

    #[test]
    fn entry_expires_when_its_ttl_is_over() {
        let c = cache();
        let q = query("www.example.com.", RecordType::A);
        let t0 = Instant::now();
        c.put(&q, &positive(&q, 30), t0);
        assert_eq!(c.get(&q, t0 + secs(29)).unwrap().answers()[0].ttl(), 1);
        assert!(c.get(&q, t0 + secs(30)).is_none());
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.expired, s.entries), (1, 1, 1, 0));
    }

    #[test]
    fn lookup_ignores_case_and_answers_in_the_askers_spelling() {
        let c = cache();
        let stored = query("WWW.Example.COM.", RecordType::A);
        let t0 = Instant::now();
        c.put(&stored, &positive(&stored, 60), t0);
        let asked = query("www.EXAMPLE.com.", RecordType::A);
        let got = c.get(&asked, t0).unwrap();
        assert!(got.queries()[0].name().eq_case(asked.name()));
        assert!(c
            .get(&query("www.example.com.", RecordType::AAAA), t0)
            .is_none());
    }

    #[test]
    fn entry_lives_as_long_as_its_shortest_lived_record() {
        let c = cache();
        let q = query("www.example.com.", RecordType::A);
        let mut m = reply(&q, ResponseCode::NoError);
        m.add_answer(Record::from_rdata(
            name("www.example.com."),
            600,
            RData::CNAME(CNAME(name("edge.example.net."))),
        ));
        m.add_answer(a("edge.example.net.", 20, 1));
        let t0 = Instant::now();
        c.put(&q, &m, t0);
        let got = c.get(&q, t0 + secs(5)).unwrap();
        assert_eq!(got.answers()[0].ttl(), 15);
        assert_eq!(got.answers()[1].ttl(), 15);
        assert!(c.get(&q, t0 + secs(20)).is_none());
    }

    #[test]
    fn positive_lifetime_is_capped_by_max_ttl() {
        let c = Cache::new(100, secs(60), DEFAULT_MAX_NEGATIVE_TTL);
        let q = query("www.example.com.", RecordType::A);
        let t0 = Instant::now();
        c.put(&q, &positive(&q, 86_400), t0);
        assert_eq!(c.get(&q, t0).unwrap().answers()[0].ttl(), 60);
        assert!(c.get(&q, t0 + secs(60)).is_none());
    }

    #[test]
    fn nxdomain_with_soa_is_cached_for_min_of_soa_ttl_and_minimum() {
        let c = cache();
        let q = query("nope.example.com.", RecordType::A);
        let mut m = reply(&q, ResponseCode::NXDomain);
        m.add_name_server(soa("example.com.", 900, 120));
        let t0 = Instant::now();
        assert!(c.put(&q, &m, t0));
        let got = c.get(&q, t0 + secs(20)).unwrap();
        assert_eq!(got.response_code(), ResponseCode::NXDomain);
        assert_eq!(got.name_servers()[0].ttl(), 100);
        assert!(c.get(&q, t0 + secs(120)).is_none());
    }

    #[test]
    fn nodata_with_soa_is_cached_and_capped_by_max_negative_ttl() {
        let c = Cache::new(100, DEFAULT_MAX_TTL, secs(30));
        let q = query("www.example.com.", RecordType::AAAA);
        let mut m = reply(&q, ResponseCode::NoError);
        m.add_name_server(soa("example.com.", 3600, 3600));
        let t0 = Instant::now();
        assert!(c.put(&q, &m, t0));
        let got = c.get(&q, t0 + secs(29)).unwrap();
        assert!(got.answers().is_empty());
        assert_eq!(got.name_servers()[0].ttl(), 1);
        assert!(c.get(&q, t0 + secs(30)).is_none());
    }

    #[test]
    fn negative_answer_without_soa_is_not_cached() {
        let c = cache();
        let t0 = Instant::now();
        let q = query("nope.example.com.", RecordType::A);
        assert!(!c.put(&q, &reply(&q, ResponseCode::NXDomain), t0));
        let q2 = query("www.example.com.", RecordType::AAAA);
        assert!(!c.put(&q2, &reply(&q2, ResponseCode::NoError), t0));
        assert!(c.get(&q, t0).is_none());
        assert!(c.get(&q2, t0).is_none());
    }

    #[test]
    fn truncated_reply_is_not_cached() {
        let c = cache();
        let q = query("www.example.com.", RecordType::A);
        let mut m = positive(&q, 300);
        m.set_truncated(true);
        let t0 = Instant::now();
        assert!(!c.put(&q, &m, t0));
        assert!(c.get(&q, t0).is_none());
    }

    #[test]
    fn servfail_and_refused_are_not_cached() {
        let c = cache();
        let q = query("www.example.com.", RecordType::A);
        let t0 = Instant::now();
        for rcode in [ResponseCode::ServFail, ResponseCode::Refused] {
            let mut m = reply(&q, rcode);
            m.add_name_server(soa("example.com.", 300, 300));
            assert!(!c.put(&q, &m, t0));
        }
        assert!(c.get(&q, t0).is_none());
    }

    #[test]
    fn ttl_zero_is_not_cached() {
        let c = cache();
        let q = query("www.example.com.", RecordType::A);
        let t0 = Instant::now();
        assert!(!c.put(&q, &positive(&q, 0), t0));
        let mut neg = reply(&q, ResponseCode::NXDomain);
        neg.add_name_server(soa("example.com.", 300, 0));
        assert!(!c.put(&q, &neg, t0));
        assert!(c.get(&q, t0).is_none());
    }

    #[test]
    fn reply_larger_than_entry_bound_is_not_cached() {
        let c = cache();
        let q = query("big.example.com.", RecordType::A);
        let mut m = reply(&q, ResponseCode::NoError);
        for i in 0..=255u8 {
            m.add_answer(a("big.example.com.", 300, i));
        }
        assert!(m.to_vec().unwrap().len() > MAX_ENTRY_WIRE_BYTES);
        let t0 = Instant::now();
        assert!(!c.put(&q, &m, t0));
        assert!(c.get(&q, t0).is_none());
    }

    #[test]
    fn entry_count_is_bounded_and_eviction_spares_a_recently_read_entry() {
        let c = Cache::new(3, DEFAULT_MAX_TTL, DEFAULT_MAX_NEGATIVE_TTL);
        let t0 = Instant::now();
        let qs: Vec<Query> = ["a.", "b.", "c.", "d."]
            .iter()
            .map(|n| query(n, RecordType::A))
            .collect();
        for q in &qs[..3] {
            assert!(c.put(q, &positive(q, 300), t0));
        }
        assert!(c.get(&qs[0], t0).is_some());
        assert!(c.put(&qs[3], &positive(&qs[3], 300), t0));
        let s = c.stats();
        assert_eq!((s.entries, s.evictions), (3, 1));
        assert!(c.get(&qs[0], t0).is_some(), "read entry kept");
        assert!(c.get(&qs[1], t0).is_none(), "unread entry evicted");
        assert!(c.get(&qs[2], t0).is_some());
        assert!(c.get(&qs[3], t0).is_some());
    }

    #[test]
    fn large_cache_stays_within_max_entries() {
        let c = Cache::new(1000, DEFAULT_MAX_TTL, DEFAULT_MAX_NEGATIVE_TTL);
        let t0 = Instant::now();
        for i in 0..5000 {
            let q = query(&format!("n{i}.example.com."), RecordType::A);
            c.put(&q, &positive(&q, 300), t0);
        }
        let s = c.stats();
        assert_eq!(s.entries, 1000);
        assert_eq!(s.evictions, 4000);
    }

    #[test]
    fn zero_entries_caches_nothing() {
        let c = Cache::new(0, DEFAULT_MAX_TTL, DEFAULT_MAX_NEGATIVE_TTL);
        let q = query("www.example.com.", RecordType::A);
        let t0 = Instant::now();
        assert!(!c.put(&q, &positive(&q, 300), t0));
        assert!(c.get(&q, t0).is_none());
    }
}
