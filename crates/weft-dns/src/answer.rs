//! The answer step: request bytes + a compiled [`Zone`] → an [`Action`]
//! (reply bytes, a question to forward upstream, or nothing). Pure: the only
//! inputs are the zone, the packet, the transport and client address, and a
//! seed for record order, so the same inputs always give the same bytes.
//!
//! The rules, with the text each follows:
//!
//! - A packet whose header cannot be read, or that is itself a response
//!   (QR=1), is dropped (answering responses invites reflection loops).
//!   Opcode other than QUERY → NOTIMP (RFC 1035 4.1.1). A message hickory
//!   cannot parse, or with QDCOUNT ≠ 1 (RFC 9619), or a question of type OPT
//!   (RFC 6891 6.1.1) → FORMERR.
//! - EDNS (RFC 6891): a client OPT is answered with ours (payload
//!   [`UDP_PAYLOAD`], the DO bit copied as RFC 3225 3 asks); version > 0 →
//!   BADVERS (6.1.3). A UDP reply is held to the client's advertised size,
//!   at least 512 (6.2.5) and at most [`UDP_PAYLOAD`] (DNS Flag Day 2020:
//!   no fragmented UDP); without OPT to 512 octets (RFC 1035 4.2.1); over TCP
//!   to 65535 (RFC 7766).
//! - Truncation (RFC 2181 9): when the additional section is what does not
//!   fit, it is dropped without TC; when the answer or authority does not
//!   fit, TC=1 and those sections are emptied (a partial RRset must not be
//!   sent as if whole, and the client retries over TCP anyway; the OPT stays,
//!   RFC 6891 7).
//! - QCLASS ANY → NOTIMP (class-wildcard matching is not implemented);
//!   any class other than IN → REFUSED (no such data here, and the upstream
//!   path is IN only). AXFR/IXFR → REFUSED over TCP (RFC 5936 4.2: transfers
//!   are refused by policy), NOTIMP over UDP (AXFR is undefined over UDP).
//! - QTYPE ANY in the zone: the conventional answer, every set the name has
//!   (RFC 1035 3.2.3; RFC 8482 4.1 allows it): names here carry at most a
//!   few sets, and over UDP the size rules above bound the amplification.
//! - In-zone answers are authoritative (AA); a name that does not exist is
//!   NXDOMAIN, one that exists without the type NOERROR/NODATA (RFC 8020),
//!   both with the zone's SOA in the authority section (RFC 2308 3). RD and
//!   CD are copied, RA is set, AD is clear (RFC 6840 5.7-5.8).
//! - Case (RFC 4343): names are matched case-insensitively; the question is
//!   echoed as asked, and records owned by the asked name carry its spelling
//!   (what BIND and CoreDNS do, and what lets hickory compress them to the
//!   question; dig and stub resolvers accept either).
//! - CNAMEs (ExternalName) are followed inside the zone (RFC 1034 4.3.2
//!   3.a); a target outside is resolved upstream, and the reply carries the
//!   chain before the upstream's records, with the upstream's rcode (RFC 6604:
//!   the rcode is that of the last name).
//! - Names outside the cluster domain, and reverse names (`in-addr.arpa.`,
//!   `ip6.arpa.`) without a record here, are forwarded (CoreDNS `fallthrough
//!   in-addr.arpa ip6.arpa`).
//! - Autopath (CoreDNS autopath plugin): a query `<x>.<ns>.svc.<domain>` that
//!   does not exist, from a client whose namespace `<ns>` the zone knows,
//!   walks the rest of a Pod's search path (`svc.<domain>`, `<domain>`, then
//!   `<x>.` itself upstream) and answers the first name that exists behind a
//!   CNAME from the original. When even `<x>.` is not found upstream (or the
//!   upstream fails), the reply is the original name's own NXDOMAIN, so the
//!   client's resolver goes on through its search list as without autopath.
//! - Sets of more than one record come in an order shuffled from the seed
//!   (Fisher–Yates), as a round-robin would, but deterministic for tests.

use std::borrow::Cow;
use std::net::IpAddr;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use crate::zone::{KeyBuf, Lookup, Node, Zone};

/// The UDP payload size we advertise and the most we send over UDP.
pub const UDP_PAYLOAD: u16 = 1232;
/// The size of a UDP reply to a client without EDNS (RFC 1035 4.2.1).
pub const PLAIN_UDP: usize = 512;
/// How many CNAMEs are followed inside the zone before answering with the
/// chain as it stands.
pub const MAX_CHAIN: usize = 8;

/// How the request came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Who asked, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctx {
    pub transport: Transport,
    pub client: IpAddr,
}

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Resolve [`Pending::question`] upstream, then send
    /// [`Pending::finish`]'s bytes.
    Forward(Box<Pending>),
    /// Send nothing.
    Drop,
}

/// The upstream could not give an answer (timeout, network error, an
/// unparsable reply): the client gets SERVFAIL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no usable answer from upstream")]
pub struct UpstreamError;

/// What a forwarded answer is finished with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Alias {
    /// A plain forward: the client's question itself.
    None,
    /// CNAMEs from the zone leading to the question (ExternalName).
    Chain(Vec<Record>),
    /// Autopath's last step: the CNAME from the original name to `<x>.`,
    /// and the SOA for the original's NXDOMAIN.
    Autopath(Box<AutopathAlias>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AutopathAlias {
    cname: Record,
    soa: Record,
}

/// A request waiting for the upstream's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    header: Header,
    client_edns: Option<Edns>,
    limit: usize,
    asked: Query,
    question: Query,
    alias: Alias,
}

impl Pending {
    /// The question to ask upstream.
    pub fn question(&self) -> &Query {
        &self.question
    }

    /// The client's question, as asked.
    pub fn client_question(&self) -> &Query {
        &self.asked
    }

    /// The client's reply from the upstream's answer: the client's id and
    /// question, the upstream's rcode and sections (its OPT replaced by ours,
    /// TSIG/SIG(0) dropped) after any CNAMEs from the zone, truncated to the
    /// client's size. SERVFAIL when the upstream failed or answered another
    /// question.
    pub fn finish(&self, upstream: Result<&Message, UpstreamError>) -> Vec<u8> {
        let upstream = upstream.ok().filter(|m| {
            m.message_type() == MessageType::Response
                && m.queries().len() == 1
                && m.queries()[0].query_type() == self.question.query_type()
                && m.queries()[0].query_class() == self.question.query_class()
                && m.queries()[0].name().eq_ignore_root(self.question.name())
        });
        let mut header = self.header;
        let mut answers: Vec<Cow<'_, Record>> = Vec::new();
        let mut authority: Vec<Cow<'_, Record>> = Vec::new();
        let mut additional: Vec<Cow<'_, Record>> = Vec::new();
        match (&self.alias, upstream) {
            (Alias::Autopath(ap), Some(m)) if m.response_code() == ResponseCode::NoError => {
                answers.push(Cow::Borrowed(&ap.cname));
                answers.extend(m.answers().iter().map(Cow::Borrowed));
                authority.extend(m.name_servers().iter().map(Cow::Borrowed));
                additional.extend(m.additionals().iter().map(Cow::Borrowed));
                header.set_truncated(m.truncated());
            }
            (Alias::Autopath(ap), _) => {
                header
                    .set_authoritative(true)
                    .set_response_code(ResponseCode::NXDomain);
                authority.push(Cow::Borrowed(&ap.soa));
            }
            (_, None) => {
                header.set_response_code(ResponseCode::ServFail);
            }
            (alias, Some(m)) => {
                let rcode = m.response_code();
                if rcode.high() > 0 && self.client_edns.is_none() {
                    header.set_response_code(ResponseCode::ServFail);
                } else {
                    header.set_response_code(rcode).set_truncated(m.truncated());
                    if let Alias::Chain(chain) = alias {
                        answers.extend(chain.iter().map(Cow::Borrowed));
                    }
                    answers.extend(m.answers().iter().map(Cow::Borrowed));
                    authority.extend(m.name_servers().iter().map(Cow::Borrowed));
                    additional.extend(m.additionals().iter().map(Cow::Borrowed));
                }
            }
        }
        self.reply(
            &header,
            &Sections {
                answers,
                authority,
                additional,
            },
        )
    }

    /// The client's reply when nothing is forwarded (`weft dns
    /// --upstream=none`): an ExternalName's CNAME chain alone (NOERROR, the
    /// client's resolver follows it if it can), autopath's original name
    /// NXDOMAIN (what it would be without autopath, since nothing outside
    /// resolves), any other outside name REFUSED (RFC 8906 §3.1.4: not a
    /// server for that name).
    pub fn unforwarded(&self) -> Vec<u8> {
        let mut header = self.header;
        let mut answers: Vec<Cow<'_, Record>> = Vec::new();
        let mut authority: Vec<Cow<'_, Record>> = Vec::new();
        match &self.alias {
            Alias::None => {
                header.set_response_code(ResponseCode::Refused);
            }
            Alias::Chain(chain) => {
                header.set_authoritative(true);
                answers.extend(chain.iter().map(Cow::Borrowed));
            }
            Alias::Autopath(ap) => {
                header
                    .set_authoritative(true)
                    .set_response_code(ResponseCode::NXDomain);
                authority.push(Cow::Borrowed(&ap.soa));
            }
        }
        self.reply(
            &header,
            &Sections {
                answers,
                authority,
                additional: Vec::new(),
            },
        )
    }

    /// The client's reply with `header` and `sections`: its question, its
    /// EDNS, its size limit.
    fn reply(&self, header: &Header, sections: &Sections<'_>) -> Vec<u8> {
        encode(
            header,
            Some(&self.asked),
            sections,
            self.client_edns.as_ref(),
            self.limit,
        )
    }
}

/// splitmix64: a small, seedable generator for record order.
pub(crate) struct OrderRng {
    state: u64,
    /// Whether any order was drawn: the answer depended on the seed.
    used: bool,
}

impl OrderRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            state: seed,
            used: false,
        }
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.used = true;
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (n > 0), by multiply-shift.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

/// Fisher–Yates over `items`.
pub(crate) fn shuffle<T>(items: &mut [T], rng: &mut OrderRng) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i + 1);
        items.swap(i, j);
    }
}

struct Sections<'a> {
    answers: Vec<Cow<'a, Record>>,
    authority: Vec<Cow<'a, Record>>,
    additional: Vec<Cow<'a, Record>>,
}

/// Emits a message, or `None` when hickory refuses it or it exceeds
/// `limit`; the header it was written with says whether hickory itself
/// had to leave records out.
fn emit(
    header: &Header,
    query: Option<&Query>,
    answers: &[Cow<'_, Record>],
    authority: &[Cow<'_, Record>],
    additional: &[Cow<'_, Record>],
    edns: Option<&Edns>,
    limit: usize,
) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(512);
    let written = {
        let mut enc = BinEncoder::new(&mut buf);
        hickory_proto::op::message::emit_message_parts(
            header,
            &mut query.into_iter(),
            &mut answers.iter().map(|r| &**r),
            &mut authority.iter().map(|r| &**r),
            &mut additional.iter().map(|r| &**r),
            edns,
            &[],
            &mut enc,
        )
        .ok()?
    };
    (written.truncated() == header.truncated() && buf.len() <= limit).then_some(buf)
}

/// Emits the reply within `limit` (see the module doc on truncation).
fn encode(
    header: &Header,
    query: Option<&Query>,
    s: &Sections<'_>,
    edns: Option<&Edns>,
    limit: usize,
) -> Vec<u8> {
    if let Some(full) = emit(
        header,
        query,
        &s.answers,
        &s.authority,
        &s.additional,
        edns,
        limit,
    ) {
        return full;
    }
    if !s.additional.is_empty() {
        if let Some(bytes) = emit(header, query, &s.answers, &s.authority, &[], edns, limit) {
            return bytes;
        }
    }
    let mut tc = *header;
    tc.set_truncated(true);
    if let Some(bytes) = emit(&tc, query, &[], &[], &[], edns, limit) {
        return bytes;
    }
    // A question too big for the limit cannot happen (a name is at most
    // 255 octets); the bare header is the last resort.
    tc.set_query_count(0)
        .set_answer_count(0)
        .set_name_server_count(0)
        .set_additional_count(0);
    tc.to_bytes().unwrap_or_default()
}

fn our_edns(client: &Edns) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(UDP_PAYLOAD)
        .set_version(0)
        .set_dnssec_ok(client.flags().dnssec_ok);
    e
}

/// Answers one request. `shuffle` seeds the order of multi-record sets.
pub fn answer(zone: &Zone, request: &[u8], ctx: &Ctx, shuffle: u64) -> Action {
    answer_reusable(zone, request, ctx, shuffle).0
}

/// [`answer`], and whether the reply is the zone's only possible answer to
/// these request bytes: it drew no record order (no set of more than one
/// record) and does not depend on who asks (no autopath). Such a reply,
/// with the id patched, answers every identical request (same bytes after
/// the id, same transport) for as long as the zone snapshot is the same.
pub fn answer_reusable(zone: &Zone, request: &[u8], ctx: &Ctx, shuffle: u64) -> (Action, bool) {
    let mut rng = OrderRng::new(shuffle);
    let action = answer_with(zone, request, ctx, &mut rng);
    let reusable = matches!(action, Action::Reply(_)) && !rng.used && !zone.autopath();
    (action, reusable)
}

fn answer_with(zone: &Zone, request: &[u8], ctx: &Ctx, rng: &mut OrderRng) -> Action {
    let Ok(req_header) = Header::read(&mut BinDecoder::new(request)) else {
        return Action::Drop;
    };
    if req_header.message_type() == MessageType::Response {
        return Action::Drop;
    }
    let mut header = Header::response_from_request(&req_header);
    header.set_recursion_available(true);
    let bare = |header: &mut Header, rcode: ResponseCode| {
        header.set_response_code(rcode);
        let s = Sections {
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
        };
        Action::Reply(encode(header, None, &s, None, PLAIN_UDP))
    };
    if req_header.op_code() != OpCode::Query {
        return bare(&mut header, ResponseCode::NotImp);
    }
    let Ok(request) = Message::from_vec(request) else {
        return bare(&mut header, ResponseCode::FormErr);
    };
    let client_edns = request.extensions().as_ref().map(our_edns);
    let limit = match ctx.transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => match request.extensions() {
            Some(e) => usize::from(e.max_payload().clamp(PLAIN_UDP as u16, UDP_PAYLOAD)),
            None => PLAIN_UDP,
        },
    };
    let reply = |header: &Header, query: Option<&Query>, s: &Sections<'_>| {
        Action::Reply(encode(header, query, s, client_edns.as_ref(), limit))
    };
    let empty = Sections {
        answers: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
    };
    let query = (request.queries().len() == 1).then(|| &request.queries()[0]);
    if request
        .extensions()
        .as_ref()
        .is_some_and(|e| e.version() > 0)
    {
        header.set_response_code(ResponseCode::BADVERS);
        return reply(&header, query, &empty);
    }
    let Some(query) = query else {
        header.set_response_code(ResponseCode::FormErr);
        return reply(&header, None, &empty);
    };
    let refuse = match (query.query_class(), query.query_type(), ctx.transport) {
        (_, RecordType::OPT, _) => Some(ResponseCode::FormErr),
        (DNSClass::ANY, _, _) => Some(ResponseCode::NotImp),
        (DNSClass::IN, RecordType::AXFR | RecordType::IXFR, Transport::Udp) => {
            Some(ResponseCode::NotImp)
        }
        (DNSClass::IN, RecordType::AXFR | RecordType::IXFR, Transport::Tcp) => {
            Some(ResponseCode::Refused)
        }
        (DNSClass::IN, _, _) => None,
        _ => Some(ResponseCode::Refused),
    };
    if let Some(rcode) = refuse {
        header.set_response_code(rcode);
        return reply(&header, Some(query), &empty);
    }

    match resolve(zone, query, ctx.client, rng) {
        Resolved::Answer {
            rcode,
            sections,
            authoritative,
        } => {
            header
                .set_response_code(rcode)
                .set_authoritative(authoritative);
            reply(&header, Some(query), &sections)
        }
        Resolved::Forward(forward) => {
            let (question, alias) = *forward;
            Action::Forward(Box::new(Pending {
                header,
                client_edns,
                limit,
                asked: query.clone(),
                question,
                alias,
            }))
        }
    }
}

enum Resolved<'z> {
    Answer {
        rcode: ResponseCode,
        authoritative: bool,
        sections: Sections<'z>,
    },
    /// The question to ask upstream and how to finish its answer.
    Forward(Box<(Query, Alias)>),
}

/// Pushes the records of a set in shuffled order, owned by `owner` as
/// spelled (a clone only when the spelling differs from the stored one).
fn push_set<'z>(
    out: &mut Vec<Cow<'z, Record>>,
    records: &'z [Record],
    owner: &Name,
    rng: &mut OrderRng,
) {
    let start = out.len();
    for r in records {
        if r.name().eq_case(owner) {
            out.push(Cow::Borrowed(r));
        } else {
            let mut own = r.clone();
            own.set_name(owner.clone());
            out.push(Cow::Owned(own));
        }
    }
    shuffle(&mut out[start..], rng);
}

fn resolve<'z>(zone: &'z Zone, query: &Query, client: IpAddr, rng: &mut OrderRng) -> Resolved<'z> {
    if zone.autopath() && zone.lookup(query.name()) == Lookup::NxDomain {
        if let Some(found) = autopath(zone, query, client, rng) {
            return found;
        }
    }
    resolve_name(zone, query, rng)
}

/// The zone's answer to `query`, following CNAMEs.
fn resolve_name<'z>(zone: &'z Zone, query: &Query, rng: &mut OrderRng) -> Resolved<'z> {
    let qtype = query.query_type();
    let mut buf = KeyBuf::new();
    let first = zone.lookup_with(query.name(), &mut buf);
    let mut sections = Sections {
        answers: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
    };
    let mut name: Cow<'_, Name> = Cow::Borrowed(query.name());
    let mut found = first;
    for _ in 0..=MAX_CHAIN {
        let node: &Node = match found {
            Lookup::Outside => {
                if sections.answers.is_empty() {
                    return Resolved::Forward(Box::new((query.clone(), Alias::None)));
                }
                let chain = sections.answers.into_iter().map(Cow::into_owned).collect();
                let mut question = Query::query(name.into_owned(), qtype);
                question.set_query_class(DNSClass::IN);
                return Resolved::Forward(Box::new((question, Alias::Chain(chain))));
            }
            Lookup::NxDomain => {
                sections.authority.push(Cow::Borrowed(zone.soa_for(&name)));
                return Resolved::Answer {
                    rcode: ResponseCode::NXDomain,
                    authoritative: true,
                    sections,
                };
            }
            Lookup::PodEmpty => return nodata(zone, &name, sections),
            Lookup::Pod(record) => {
                if qtype == record.record_type() || qtype == RecordType::ANY {
                    sections.answers.push(Cow::Owned(*record));
                    return Resolved::Answer {
                        rcode: ResponseCode::NoError,
                        authoritative: true,
                        sections,
                    };
                }
                return nodata(zone, &name, sections);
            }
            Lookup::Node(node) => node,
        };
        if qtype == RecordType::ANY && !node.sets.is_empty() {
            for set in &node.sets {
                push_set(&mut sections.answers, &set.records, &name, rng);
            }
            return Resolved::Answer {
                rcode: ResponseCode::NoError,
                authoritative: true,
                sections,
            };
        }
        if let Some(set) = node.get(qtype) {
            push_set(&mut sections.answers, &set.records, &name, rng);
            push_set_additional(&mut sections.additional, &set.additional, rng);
            return Resolved::Answer {
                rcode: ResponseCode::NoError,
                authoritative: true,
                sections,
            };
        }
        let target = node.get(RecordType::CNAME).and_then(|set| {
            let first = set.records.first()?;
            match first.data() {
                RData::CNAME(CNAME(t)) => Some((&set.records, t)),
                _ => None,
            }
        });
        let Some((cname, target)) = target else {
            return nodata(zone, &name, sections);
        };
        push_set(&mut sections.answers, cname, &name, rng);
        name = Cow::Borrowed(target);
        found = zone.lookup_with(target, &mut buf);
    }
    // A chain longer than MAX_CHAIN (or a loop): the chain as it stands.
    Resolved::Answer {
        rcode: ResponseCode::NoError,
        authoritative: true,
        sections,
    }
}

fn push_set_additional<'z>(
    out: &mut Vec<Cow<'z, Record>>,
    records: &'z [Record],
    rng: &mut OrderRng,
) {
    let start = out.len();
    out.extend(records.iter().map(Cow::Borrowed));
    shuffle(&mut out[start..], rng);
}

fn nodata<'z>(zone: &'z Zone, name: &Name, mut sections: Sections<'z>) -> Resolved<'z> {
    // After a CNAME the data is the target's: NOERROR with the chain
    // (RFC 2308 2.2), the SOA saying the target has no such type.
    sections.authority.push(Cow::Borrowed(zone.soa_for(name)));
    Resolved::Answer {
        rcode: ResponseCode::NoError,
        authoritative: true,
        sections,
    }
}

/// Autopath for `<x>.<ns>.svc.<domain>` (see the module doc), or `None`
/// when the query is not one it applies to.
fn autopath<'z>(
    zone: &'z Zone,
    query: &Query,
    client: IpAddr,
    rng: &mut OrderRng,
) -> Option<Resolved<'z>> {
    let ns = zone.namespace_of(client)?;
    let qname = query.name();
    let domain = zone.domain();
    let below = usize::from(qname.num_labels()).checked_sub(usize::from(domain.num_labels()))?;
    if below < 3 {
        return None;
    }
    let mut labels = qname.iter().take(below).rev();
    let svc = labels.next()?;
    let q_ns = labels.next()?;
    if !svc.eq_ignore_ascii_case(b"svc") || !q_ns.eq_ignore_ascii_case(ns.as_bytes()) {
        return None;
    }
    let x = Name::from_labels(qname.iter().take(below - 2)).ok()?;
    let svc_domain = Name::from_labels([b"svc".as_slice()])
        .ok()?
        .append_domain(domain)
        .ok()?;
    let mut relative = x.clone();
    relative.set_fqdn(false);
    for search in [&svc_domain, domain] {
        let Ok(candidate) = relative.clone().append_domain(search) else {
            continue;
        };
        if matches!(zone.lookup(&candidate), Lookup::NxDomain | Lookup::Outside) {
            continue;
        }
        let cname = Record::from_rdata(
            qname.clone(),
            zone.ttl(),
            RData::CNAME(CNAME(candidate.clone())),
        );
        let mut rest = Query::query(candidate, query.query_type());
        rest.set_query_class(DNSClass::IN);
        let resolved = match resolve_name(zone, &rest, rng) {
            Resolved::Answer {
                rcode,
                authoritative,
                mut sections,
            } => {
                sections.answers.insert(0, Cow::Owned(cname));
                Resolved::Answer {
                    rcode,
                    authoritative,
                    sections,
                }
            }
            Resolved::Forward(forward) => {
                let (question, alias) = *forward;
                let mut chain = vec![cname];
                match alias {
                    Alias::Chain(more) => chain.extend(more),
                    Alias::None | Alias::Autopath(_) => {}
                }
                Resolved::Forward(Box::new((question, Alias::Chain(chain))))
            }
        };
        return Some(resolved);
    }
    let cname = Record::from_rdata(qname.clone(), zone.ttl(), RData::CNAME(CNAME(x.clone())));
    let mut question = Query::query(x, query.query_type());
    question.set_query_class(DNSClass::IN);
    let alias = Alias::Autopath(Box::new(AutopathAlias {
        cname,
        soa: zone.soa().clone(),
    }));
    Some(Resolved::Forward(Box::new((question, alias))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn shuffle_is_a_permutation(n in 0usize..64, seed in any::<u64>()) {
            let mut items: Vec<usize> = (0..n).collect();
            shuffle(&mut items, &mut OrderRng::new(seed));
            let mut sorted = items.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        }

        #[test]
        fn shuffle_is_deterministic_for_a_seed(n in 0usize..64, seed in any::<u64>()) {
            let mut a: Vec<usize> = (0..n).collect();
            let mut b = a.clone();
            shuffle(&mut a, &mut OrderRng::new(seed));
            shuffle(&mut b, &mut OrderRng::new(seed));
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn shuffle_reaches_every_position() {
        // Each of 4 items lands first for some seed (no fixed point in the
        // generator's use).
        let mut firsts = [false; 4];
        for seed in 0..200 {
            let mut items = [0, 1, 2, 3];
            shuffle(&mut items, &mut OrderRng::new(seed));
            firsts[items[0]] = true;
        }
        assert_eq!(firsts, [true; 4]);
    }
}
