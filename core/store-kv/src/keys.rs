//! Key layout of the single sled tree. One tree keeps every multi-record write atomic
//! (`apply_batch`); a one-byte prefix separates the record kinds.
//!
//! | prefix | key                                   | value                     |
//! |--------|---------------------------------------|---------------------------|
//! | `A`    | app 0 alias                           | AliasRecord (binary)      |
//! | `D`    | app 0 provider 0 cid                  | alias (UTF-8)             |
//! | `M`    | message id (16)                       | MessageRecord             |
//! | `V`    | message id (16) index (2)             | DeliveryRecord            |
//! | `O`    | provider 0 due ms (8) delivery id (18)| empty: the outbox         |
//! | `R`    | provider 0 provider reference         | delivery id (18)          |
//! | `I`    | app 0 request id                      | IdempotencyEntry          |
//! | `X`    | expires ms (8) message id (16)        | empty: TTL index          |
//! | `E`    | due ms (8) event id (16)              | EventRecord               |
//! | `P`    | provider 0 provider reference         | Receipt: early one        |
//! | `U`    | provider 0 upstream msgid             | UpstreamRecord            |
//! | `Q`    | ordering key 0 event id (16)          | EventRecord: queue        |
//! | `Z`    | at ms (8) id (16)                     | key to remove (retention) |
//! | `L`    | due ms (8) mirror id (16)             | AliasMirror               |
//! | `K`    | provider 0 app 0 cid                  | due (8) mirror id (16)    |
//! | `G`    | provider 0 cid                        | at ms (decimal): gone     |
//! | `S`    | app 0 event id (16)                   | EventRecord: log          |
//!
//! Records are MessagePack maps, or JSON objects written by earlier versions (see
//! `record_codec`). Names never contain a 0 byte (validated), so the separator is unambiguous.

use pushgate_api::model::{DeliveryId, DeviceRef, MessageId};

pub const ALIAS: u8 = b'A';
pub const DEVICE: u8 = b'D';
pub const MESSAGE: u8 = b'M';
pub const DELIVERY: u8 = b'V';
pub const OUTBOX: u8 = b'O';
pub const REFERENCE: u8 = b'R';
pub const IDEMPOTENCY: u8 = b'I';
pub const EXPIRY: u8 = b'X';
pub const EVENT: u8 = b'E';
pub const EARLY_RECEIPT: u8 = b'P';
pub const GONE_DEVICE: u8 = b'G';
/// An app's event log: `S app 0 id(16)` → EventRecord.
pub const EVENT_LOG: u8 = b'S';
pub const UPSTREAM: u8 = b'U';
pub const ORDERED: u8 = b'Q';
/// Scheduled removals: `Z ++ at(8) ++ id(16)` → the key to remove.
pub const REMOVAL: u8 = b'Z';
/// Pending alias mirrors: `L ++ due(8) ++ id(16)` → AliasMirror.
pub const MIRROR: u8 = b'L';
/// A device's current alias mirror: `K provider 0 app 0 cid` → `due(8) ++ id(16)`.
pub const MIRROR_OF_DEVICE: u8 = b'K';

fn join(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = 1 + parts.iter().map(|p| p.len() + 1).sum::<usize>();
    let mut key = Vec::with_capacity(len);
    key.push(prefix);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(0);
        }
        key.extend_from_slice(part);
    }
    key
}

pub fn alias(app: &str, alias: &str) -> Vec<u8> {
    join(ALIAS, &[app.as_bytes(), alias.as_bytes()])
}

pub fn device(app: &str, device: &DeviceRef) -> Vec<u8> {
    join(
        DEVICE,
        &[
            app.as_bytes(),
            device.provider.as_bytes(),
            device.cid.as_bytes(),
        ],
    )
}

pub fn message(id: MessageId) -> Vec<u8> {
    join(MESSAGE, &[&id.to_bytes()])
}

pub fn delivery(id: DeliveryId) -> Vec<u8> {
    join(DELIVERY, &[&id.to_bytes()])
}

/// Prefix of every delivery of a message.
pub fn deliveries_of(id: MessageId) -> Vec<u8> {
    join(DELIVERY, &[&id.to_bytes()])
}

/// `O provider 0`: the start of a provider's outbox.
pub fn outbox_prefix(provider: &str) -> Vec<u8> {
    let mut k = join(OUTBOX, &[provider.as_bytes()]);
    k.push(0);
    k
}

pub fn outbox(provider: &str, due: u64, id: DeliveryId) -> Vec<u8> {
    let mut k = outbox_prefix(provider);
    k.extend_from_slice(&due.to_be_bytes());
    k.extend_from_slice(&id.to_bytes());
    k
}

/// The `(due, delivery id)` of an outbox key, given its provider prefix length.
pub fn parse_outbox(key: &[u8], prefix_len: usize) -> Option<(u64, DeliveryId)> {
    let rest = key.get(prefix_len..)?;
    let due = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    Some((due, DeliveryId::from_bytes(rest.get(8..)?)?))
}

pub fn reference(provider: &str, reference: &str) -> Vec<u8> {
    join(REFERENCE, &[provider.as_bytes(), reference.as_bytes()])
}

pub fn early_receipt(provider: &str, reference: &str) -> Vec<u8> {
    join(EARLY_RECEIPT, &[provider.as_bytes(), reference.as_bytes()])
}

pub fn gone_device(device: &DeviceRef) -> Vec<u8> {
    join(
        GONE_DEVICE,
        &[device.provider.as_bytes(), device.cid.as_bytes()],
    )
}

pub fn upstream(provider: &str, msgid: &str) -> Vec<u8> {
    join(UPSTREAM, &[provider.as_bytes(), msgid.as_bytes()])
}

/// `Q key 0`: the start of one ordering key's event queue.
pub fn ordered_prefix(key: &str) -> Vec<u8> {
    let mut k = join(ORDERED, &[key.as_bytes()]);
    k.push(0);
    k
}

pub fn ordered(key: &str, id: MessageId) -> Vec<u8> {
    let mut k = ordered_prefix(key);
    k.extend_from_slice(&id.to_bytes());
    k
}

/// `S app 0`: the start of an app's event log.
pub fn event_log_prefix(app: &str) -> Vec<u8> {
    let mut k = join(EVENT_LOG, &[app.as_bytes()]);
    k.push(0);
    k
}

pub fn event_log(app: &str, id: MessageId) -> Vec<u8> {
    let mut k = event_log_prefix(app);
    k.extend_from_slice(&id.to_bytes());
    k
}

/// The app prefix length and event id of an event log key.
pub fn parse_event_log(key: &[u8]) -> Option<(usize, MessageId)> {
    let split = key.len().checked_sub(16)?;
    let id: [u8; 16] = key.get(split..)?.try_into().ok()?;
    Some((split, MessageId::from_bytes(id)))
}

pub fn idempotency(app: &str, request_id: &str) -> Vec<u8> {
    join(IDEMPOTENCY, &[app.as_bytes(), request_id.as_bytes()])
}

/// A scheduled removal's own key (see [`REMOVAL`]).
pub fn removal(at: u64, id: MessageId) -> Vec<u8> {
    let mut k = vec![REMOVAL];
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(&id.to_bytes());
    k
}

pub fn expiry(at: u64, id: MessageId) -> Vec<u8> {
    let mut k = vec![EXPIRY];
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(&id.to_bytes());
    k
}

/// The time and id of a `tag ++ time(8) ++ id(16)` key: TTL index, event outbox and
/// scheduled removal keys.
pub fn parse_timed(key: &[u8]) -> Option<(u64, MessageId)> {
    let at = u64::from_be_bytes(key.get(1..9)?.try_into().ok()?);
    let id: [u8; 16] = key.get(9..25)?.try_into().ok()?;
    Some((at, MessageId::from_bytes(id)))
}

pub fn mirror(due: u64, id: MessageId) -> Vec<u8> {
    let mut k = vec![MIRROR];
    k.extend_from_slice(&due.to_be_bytes());
    k.extend_from_slice(&id.to_bytes());
    k
}

pub fn mirror_of_device(provider: &str, app: &str, cid: &str) -> Vec<u8> {
    join(
        MIRROR_OF_DEVICE,
        &[provider.as_bytes(), app.as_bytes(), cid.as_bytes()],
    )
}

pub fn event(due: u64, id: MessageId) -> Vec<u8> {
    let mut k = vec![EVENT];
    k.extend_from_slice(&due.to_be_bytes());
    k.extend_from_slice(&id.to_bytes());
    k
}

/// The first key of a time-ordered index at or after time `from`.
pub fn time_start(prefix: &[u8], from: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&from.to_be_bytes());
    k
}

/// A key that sorts after every key `prefix ++ due(8) ++ …` with due <= `until`.
pub fn time_bound(prefix: &[u8], until: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&until.saturating_add(1).to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_keys_sort_by_due_time_and_parse_back() {
        let id = DeliveryId {
            message: MessageId::generate(),
            index: 3,
        };
        let early = outbox("mock", 5, id);
        let late = outbox("mock", 1 << 40, id);
        assert!(early < late);
        let prefix = outbox_prefix("mock");
        assert_eq!(parse_outbox(&late, prefix.len()), Some((1 << 40, id)));
        assert!(late < time_bound(&prefix, 1 << 40));
        assert!(late > time_bound(&prefix, (1 << 40) - 1));
        // Another provider whose name extends this one's never falls in this range.
        assert!(!outbox("mock2", 5, id).starts_with(&prefix));
    }

    #[test]
    fn expiry_keys_parse_back() {
        let id = MessageId::generate();
        assert_eq!(parse_timed(&expiry(77, id)), Some((77, id)));
        assert_eq!(parse_timed(b"X"), None);
    }
}
