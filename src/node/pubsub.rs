//! Gossip on the [`Handle`]: subscribe, publish, validate.
//!
//! Messages are signed on the caller's thread with the node's key (the reactor never waits on
//! a signature), with a sequence number that starts at the wall clock's nanoseconds when the
//! node starts and counts up, so a restarted node never reuses one (proto-spec messages.md
//! §5.1). Validators live here, shared with the worker pool, which runs them after a message's
//! signature verified.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, unbounded, Receiver};

use super::{CallError, Handle};
use crate::core::{Command, Reply};
use crate::gossip::{Delivery, GossipCommand, GossipReply, Published};
use crate::identity::Keypair;
use crate::protocol::Validator;
use crate::runtime::deliveries::Sink;
use crate::runtime::reactor::Control;
use crate::wire::messages::GossipMessage;

/// What a handle needs to publish and validate.
pub(super) struct Publisher {
    keypair: Keypair,
    seqno: AtomicU64,
    validators: RwLock<BTreeMap<String, Arc<dyn Validator>>>,
    enabled: bool,
}

impl Publisher {
    pub(super) fn new(keypair: Keypair, enabled: bool) -> Publisher {
        let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let start = u64::try_from(start.as_nanos()).unwrap_or(u64::MAX / 2);
        Publisher {
            keypair,
            seqno: AtomicU64::new(start),
            validators: RwLock::new(BTreeMap::new()),
            enabled,
        }
    }

    /// The validator of `topic`, if one is set.
    pub(super) fn validator(&self, topic: &str) -> Option<Arc<dyn Validator>> {
        self.validators.read().ok()?.get(topic).cloned()
    }
}

/// Delivered messages of one topic, oldest first. A subscriber that does not keep up loses
/// the oldest; [`Subscription::lost`] says how many. Dropping it stops the deliveries to it,
/// but the node stays in the topic (and relays it) until [`Handle::unsubscribe`].
#[derive(Debug)]
pub struct Subscription {
    topic: String,
    rx: Receiver<Delivery>,
    lost: Arc<AtomicU64>,
    _alive: Arc<()>,
}

impl Subscription {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The next message, waiting at most `timeout`; `None` if none came.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Delivery> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next message if one is waiting.
    pub fn try_recv(&self) -> Option<Delivery> {
        self.rx.try_recv().ok()
    }

    /// The queue itself, for `select!`.
    pub fn receiver(&self) -> &Receiver<Delivery> {
        &self.rx
    }

    /// Messages dropped because this subscriber did not take them in time.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Handle {
    /// Joins `topic` and returns its deliveries. Subscribing again to a topic adds another
    /// queue (at most 8 per topic).
    pub fn subscribe(&self, topic: &str) -> Result<Subscription, CallError> {
        self.gossip_enabled()?;
        // Bounded by the reactor (`runtime::deliveries`), so it holds only what waits in it.
        let (tx, rx) = unbounded();
        let lost = Arc::new(AtomicU64::new(0));
        let alive = Arc::new(());
        let sink = Sink {
            tx,
            cap: self.subscription_queue,
            rx: rx.clone(),
            lost: Arc::clone(&lost),
            alive: Arc::downgrade(&alive),
        };
        let (ok_tx, ok_rx) = bounded(1);
        self.send(Control::TopicSink(topic.to_string(), sink, ok_tx))?;
        if !self.wait(&ok_rx, self.call_timeout)? {
            return Err(CallError::Busy);
        }
        match self.gossip(GossipCommand::Subscribe(topic.to_string()))? {
            GossipReply::Subscribed(Ok(())) => {
                Ok(Subscription { topic: topic.to_string(), rx, lost, _alive: alive })
            }
            GossipReply::Subscribed(Err(e)) => {
                let _ = self.send(Control::DropSinks(topic.to_string()));
                Err(CallError::Gossip(e))
            }
            _ => Err(CallError::Stopped),
        }
    }

    /// Leaves `topic`: its mesh peers are pruned and its subscriptions get nothing more.
    /// Whether the node was subscribed.
    pub fn unsubscribe(&self, topic: &str) -> Result<bool, CallError> {
        self.gossip_enabled()?;
        let _ = self.send(Control::DropSinks(topic.to_string()));
        match self.gossip(GossipCommand::Unsubscribe(topic.to_string()))? {
            GossipReply::Unsubscribed(was) => Ok(was),
            _ => Err(CallError::Stopped),
        }
    }

    /// Signs `payload` for `topic` with the node's key and publishes it, to the topic's
    /// subscribers whether or not this node subscribes.
    pub fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<Published, CallError> {
        self.gossip_enabled()?;
        let p = &self.pubsub;
        let seqno = p.seqno.fetch_add(1, Ordering::Relaxed);
        let msg = GossipMessage::sign(&p.keypair, seqno, topic.to_string(), payload);
        match self.gossip(GossipCommand::Publish(msg))? {
            GossipReply::Published(r) => r.map_err(CallError::Gossip),
            _ => Err(CallError::Stopped),
        }
    }

    /// Has `validator` judge every message of `topic` (on the worker pool, after its
    /// signature verified) before it is delivered or forwarded: `Reject` scores the sender
    /// down, `Ignore` drops it quietly, and a validator that does not answer within the
    /// validation timeout counts as `Ignore`. Replaces the topic's previous validator.
    pub fn set_validator(
        &self,
        topic: &str,
        validator: Arc<dyn Validator>,
    ) -> Result<(), CallError> {
        self.gossip_enabled()?;
        if let Ok(mut v) = self.pubsub.validators.write() {
            v.insert(topic.to_string(), validator);
        }
        let cmd = GossipCommand::SetValidated { topic: topic.to_string(), on: true };
        match self.gossip(cmd)? {
            GossipReply::ValidatedSet => Ok(()),
            _ => Err(CallError::Stopped),
        }
    }

    /// Removes `topic`'s validator: its verified messages are accepted again.
    pub fn clear_validator(&self, topic: &str) -> Result<(), CallError> {
        self.gossip_enabled()?;
        let cmd = GossipCommand::SetValidated { topic: topic.to_string(), on: false };
        let reply = self.gossip(cmd)?;
        if let Ok(mut v) = self.pubsub.validators.write() {
            v.remove(topic);
        }
        match reply {
            GossipReply::ValidatedSet => Ok(()),
            _ => Err(CallError::Stopped),
        }
    }

    /// Mesh peers per subscribed topic.
    pub fn meshes(&self) -> Result<Vec<(String, usize)>, CallError> {
        match self.gossip(GossipCommand::Meshes)? {
            GossipReply::Meshes(m) => Ok(m),
            _ => Err(CallError::Stopped),
        }
    }

    fn gossip_enabled(&self) -> Result<(), CallError> {
        if self.pubsub.enabled {
            Ok(())
        } else {
            Err(CallError::Unsupported)
        }
    }

    fn gossip(&self, cmd: GossipCommand) -> Result<GossipReply, CallError> {
        match self.call(Command::Gossip(cmd), self.call_timeout)? {
            Reply::Gossip(reply) => Ok(reply),
            Reply::Unsupported => Err(CallError::Unsupported),
            _ => Err(CallError::Stopped),
        }
    }
}
