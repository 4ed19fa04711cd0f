//! Placeholder for peer scoring (being written separately).
#![allow(missing_docs, dead_code)]
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::identity::NodeId;

#[derive(Debug, Clone)]
pub struct Thresholds {
    pub gossip: f64,
    pub publish: f64,
    pub graylist: f64,
    pub accept_px: f64,
    pub opportunistic_graft: f64,
}

#[derive(Debug, Clone)]
pub struct ScoreConfig {
    pub thresholds: Thresholds,
    pub mesh_delivery_window: Duration,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        ScoreConfig {
            thresholds: Thresholds {
                gossip: -10.0,
                publish: -50.0,
                graylist: -80.0,
                accept_px: 10.0,
                opportunistic_graft: 5.0,
            },
            mesh_delivery_window: Duration::from_millis(10),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ScoreStats {}

#[derive(Debug)]
pub struct Scores {
    config: ScoreConfig,
}

impl Scores {
    pub fn new(config: ScoreConfig) -> Scores {
        Scores { config }
    }
    pub fn config(&self) -> &ScoreConfig {
        &self.config
    }
    pub fn peer_up(&mut self, _now: Instant, _peer: NodeId, _ip: IpAddr) {}
    pub fn peer_down(&mut self, _now: Instant, _peer: NodeId) {}
    pub fn graft(&mut self, _now: Instant, _peer: NodeId, _topic: &str) {}
    pub fn prune(&mut self, _now: Instant, _peer: NodeId, _topic: &str) {}
    pub fn first_delivery(&mut self, _now: Instant, _peer: NodeId, _topic: &str) {}
    pub fn near_first_delivery(&mut self, _now: Instant, _peer: NodeId, _topic: &str) {}
    pub fn invalid(&mut self, _peer: NodeId, _topic: &str) {}
    pub fn penalize(&mut self, _peer: NodeId, _count: u32) {}
    pub fn set_app_score(&mut self, _peer: NodeId, _value: f64) {}
    pub fn score(&self, _now: Instant, _peer: &NodeId) -> f64 {
        0.0
    }
    pub fn refresh(&mut self, _now: Instant) {}
    pub fn stats(&self) -> ScoreStats {
        ScoreStats {}
    }
}
