//! The bound of every list, string and byte field of a message (proto-spec/messages.md §7).
//!
//! [`Bound`] names each bounded field where it occurs (the topic of a `Subscribe` and the topic
//! of a `Prune` are two bounds with the same limit), so that the test vectors can show each one
//! at its limit and one over it. [`Message::visit_bounded`] walks a message's bounded fields in
//! wire order; [`Message::check_bounds`], which the codec calls on every decode and every
//! encode, is that walk with [`Bound::check`].

use std::fmt;

use super::messages::{
    Gossip, Hello, Message, PeerInfo, Record, Request, Response, MAX_ADDRS_PER_PEER,
    MAX_AGENT_BYTES, MAX_ERROR_TEXT_BYTES, MAX_IDS_PER_CONTROL, MAX_LISTEN_ADDRS,
    MAX_NETWORK_BYTES, MAX_PAYLOAD_BYTES, MAX_PEERS_PER_RESPONSE, MAX_PX_PEERS, MAX_SALT_BYTES,
    MAX_TOPIC_BYTES, MAX_VALUE_BYTES,
};

/// Declares [`Bound`] and its tables from one list, so that `Bound::ALL` cannot miss a
/// variant.
macro_rules! bounds {
    ($($variant:ident => $field:literal, $max:ident;)*) => {
        /// A bounded field of a message, where it occurs (messages.md §7).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Bound {
            $(
                #[doc = concat!("`", $field, "`, at most `", stringify!($max), "`.")]
                $variant,
            )*
        }

        impl Bound {
            /// Every bound, in the order of the messages and their fields.
            pub const ALL: &'static [Bound] = &[$(Bound::$variant),*];

            /// The field as the spec and [`BoundError`] name it: `message.field`.
            pub fn field(self) -> &'static str {
                match self {
                    $(Bound::$variant => $field,)*
                }
            }

            /// The inclusive limit: bytes for strings and byte fields, elements for lists.
            pub fn max(self) -> usize {
                match self {
                    $(Bound::$variant => $max,)*
                }
            }
        }
    };
}

bounds! {
    HelloNetwork => "hello.network", MAX_NETWORK_BYTES;
    HelloAgent => "hello.agent", MAX_AGENT_BYTES;
    HelloListenAddrs => "hello.listen_addrs", MAX_LISTEN_ADDRS;
    StoreImmutableValue => "store.immutable.value", MAX_VALUE_BYTES;
    StoreMutableSalt => "store.mutable.salt", MAX_SALT_BYTES;
    StoreMutableValue => "store.mutable.value", MAX_VALUE_BYTES;
    AddProviderAddrs => "add_provider.provider.addrs", MAX_ADDRS_PER_PEER;
    NodesCloser => "nodes.closer", MAX_PEERS_PER_RESPONSE;
    NodesCloserAddrs => "nodes.closer.addrs", MAX_ADDRS_PER_PEER;
    ValueImmutableValue => "value.immutable.value", MAX_VALUE_BYTES;
    ValueMutableSalt => "value.mutable.salt", MAX_SALT_BYTES;
    ValueMutableValue => "value.mutable.value", MAX_VALUE_BYTES;
    ValueCloser => "value.closer", MAX_PEERS_PER_RESPONSE;
    ValueCloserAddrs => "value.closer.addrs", MAX_ADDRS_PER_PEER;
    ProvidersProviders => "providers.providers", MAX_PEERS_PER_RESPONSE;
    ProvidersProvidersAddrs => "providers.providers.addrs", MAX_ADDRS_PER_PEER;
    ProvidersCloser => "providers.closer", MAX_PEERS_PER_RESPONSE;
    ProvidersCloserAddrs => "providers.closer.addrs", MAX_ADDRS_PER_PEER;
    ErrorText => "error.text", MAX_ERROR_TEXT_BYTES;
    SubscribeTopic => "subscribe.topic", MAX_TOPIC_BYTES;
    UnsubscribeTopic => "unsubscribe.topic", MAX_TOPIC_BYTES;
    PublishTopic => "publish.topic", MAX_TOPIC_BYTES;
    PublishPayload => "publish.payload", MAX_PAYLOAD_BYTES;
    IHaveTopic => "ihave.topic", MAX_TOPIC_BYTES;
    IHaveIds => "ihave.ids", MAX_IDS_PER_CONTROL;
    IWantIds => "iwant.ids", MAX_IDS_PER_CONTROL;
    GraftTopic => "graft.topic", MAX_TOPIC_BYTES;
    PruneTopic => "prune.topic", MAX_TOPIC_BYTES;
    PrunePeers => "prune.peers", MAX_PX_PEERS;
    PrunePeersAddrs => "prune.peers.addrs", MAX_ADDRS_PER_PEER;
    IDontWantIds => "idontwant.ids", MAX_IDS_PER_CONTROL;
}

impl Bound {
    /// `Err` if `len` is above the bound.
    pub fn check(self, len: usize) -> Result<(), BoundError> {
        if len > self.max() {
            return Err(BoundError { field: self.field(), len, max: self.max() });
        }
        Ok(())
    }
}

/// A list, string or byte field is longer than its documented bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundError {
    /// The field, as named in the spec (`message.field`, [`Bound::field`]).
    pub field: &'static str,
    /// Its length (elements for lists, bytes for strings).
    pub len: usize,
    /// The bound.
    pub max: usize,
}

impl fmt::Display for BoundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} has length {}, above its bound {}", self.field, self.len, self.max)
    }
}

impl std::error::Error for BoundError {}

impl Message {
    /// Checks every documented bound; the first violation, in wire order, is returned.
    pub fn check_bounds(&self) -> Result<(), BoundError> {
        self.visit_bounded(&mut |bound, len| bound.check(len))
    }

    /// Calls `visit` with every bounded field of the message and its length, in wire order (a
    /// list before the fields of its elements), and stops at the first error it returns.
    pub fn visit_bounded<F>(&self, visit: &mut F) -> Result<(), BoundError>
    where
        F: FnMut(Bound, usize) -> Result<(), BoundError>,
    {
        match self {
            Message::Hello(h) => hello(h, visit),
            Message::Request { body, .. } => request(body, visit),
            Message::Response { body, .. } => response(body, visit),
            Message::Gossip(g) => gossip(g, visit),
            Message::Goodbye(_) => Ok(()),
        }
    }
}

fn hello<F>(h: &Hello, visit: &mut F) -> Result<(), BoundError>
where
    F: FnMut(Bound, usize) -> Result<(), BoundError>,
{
    visit(Bound::HelloNetwork, h.network.len())?;
    visit(Bound::HelloAgent, h.agent.len())?;
    visit(Bound::HelloListenAddrs, h.listen_addrs.len())
}

fn request<F>(body: &Request, visit: &mut F) -> Result<(), BoundError>
where
    F: FnMut(Bound, usize) -> Result<(), BoundError>,
{
    use Bound::*;
    match body {
        Request::Store { record, .. } => {
            self::record(record, [StoreImmutableValue, StoreMutableSalt, StoreMutableValue], visit)
        }
        Request::AddProvider { provider, .. } => visit(AddProviderAddrs, provider.addrs.len()),
        Request::Ping
        | Request::FindNode { .. }
        | Request::FindValue { .. }
        | Request::GetProviders { .. } => Ok(()),
    }
}

fn response<F>(body: &Response, visit: &mut F) -> Result<(), BoundError>
where
    F: FnMut(Bound, usize) -> Result<(), BoundError>,
{
    use Bound::*;
    match body {
        Response::Nodes { closer } => peers(closer, NodesCloser, NodesCloserAddrs, visit),
        Response::Value { record, closer } => {
            if let Some(r) = record {
                self::record(r, [ValueImmutableValue, ValueMutableSalt, ValueMutableValue], visit)?;
            }
            peers(closer, ValueCloser, ValueCloserAddrs, visit)
        }
        Response::Providers { providers, closer } => {
            peers(providers, ProvidersProviders, ProvidersProvidersAddrs, visit)?;
            peers(closer, ProvidersCloser, ProvidersCloserAddrs, visit)
        }
        Response::Error { text, .. } => visit(ErrorText, text.len()),
        Response::Pong { .. } | Response::Stored | Response::ProviderAdded => Ok(()),
    }
}

fn gossip<F>(g: &Gossip, visit: &mut F) -> Result<(), BoundError>
where
    F: FnMut(Bound, usize) -> Result<(), BoundError>,
{
    use Bound::*;
    match g {
        Gossip::Subscribe { topic } => visit(SubscribeTopic, topic.len()),
        Gossip::Unsubscribe { topic } => visit(UnsubscribeTopic, topic.len()),
        Gossip::Publish(m) => {
            visit(PublishTopic, m.topic.len())?;
            visit(PublishPayload, m.payload.0.len())
        }
        Gossip::IHave { topic, ids } => {
            visit(IHaveTopic, topic.len())?;
            visit(IHaveIds, ids.len())
        }
        Gossip::IWant { ids } => visit(IWantIds, ids.len()),
        Gossip::Graft { topic } => visit(GraftTopic, topic.len()),
        Gossip::Prune { topic, peers: px, .. } => {
            visit(PruneTopic, topic.len())?;
            peers(px, PrunePeers, PrunePeersAddrs, visit)
        }
        Gossip::IDontWant { ids } => visit(IDontWantIds, ids.len()),
    }
}

/// A record's bounds where it occurs: `[immutable value, mutable salt, mutable value]`.
fn record<F>(
    record: &Record,
    [value, salt, mutable_value]: [Bound; 3],
    visit: &mut F,
) -> Result<(), BoundError>
where
    F: FnMut(Bound, usize) -> Result<(), BoundError>,
{
    match record {
        Record::Immutable { value: v } => visit(value, v.0.len()),
        Record::Mutable(m) => {
            visit(salt, m.salt.0.len())?;
            visit(mutable_value, m.value.0.len())
        }
    }
}

/// A list of peers and the addresses of each.
fn peers<F>(list: &[PeerInfo], len: Bound, addrs: Bound, visit: &mut F) -> Result<(), BoundError>
where
    F: FnMut(Bound, usize) -> Result<(), BoundError>,
{
    visit(len, list.len())?;
    list.iter().try_for_each(|p| visit(addrs, p.addrs.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_has_a_distinct_field_name() {
        let mut fields: Vec<_> = Bound::ALL.iter().map(|b| b.field()).collect();
        fields.sort_unstable();
        fields.dedup();
        assert_eq!(fields.len(), Bound::ALL.len());
    }
}
