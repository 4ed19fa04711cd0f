//! Work a protocol hands to the worker pool (DESIGN.md, "The shape", item 3): CPU-heavy steps
//! that must not stall the reactor, such as verifying the signature of a mutable record a
//! peer asks us to store.
//!
//! A protocol emits `Action::Job { key, job }`; the router names it with a [`JobId`] that
//! carries the protocol as its owner and emits `Output::Job`. The driver runs [`run`] on a
//! worker thread (the simulator runs it inline) and reports `Input::JobDone`, or
//! `Input::JobRefused` when the pool's queue is full or the job was lost; the router hands the
//! result back to the owner by its key. [`run`] is a pure function of the job, so where it runs
//! changes nothing but timing.

use crate::wire::messages::MutableRecord;

/// Names a job across the router and the driver: the protocol that asked for it, and the
/// protocol's own key for it. Copy it back unchanged with the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId {
    /// The protocol the result goes back to.
    pub owner: super::ProtocolId,
    /// The owner's name for the job.
    pub key: JobKey,
}

/// A protocol's own name for one of its jobs; the router hands it back with the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobKey(pub u64);

/// A job for a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Verify a mutable record's Ed25519 signature (boxed: the record holds its value).
    VerifyRecord(Box<MutableRecord>),
}

/// What a job found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobResult {
    /// Whether the record's signature verified.
    RecordVerified(bool),
}

/// Runs `job`. Pure: the same job always gives the same result.
pub fn run(job: Job) -> JobResult {
    match job {
        Job::VerifyRecord(record) => JobResult::RecordVerified(record.verify()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[test]
    fn verify_record_reports_good_and_forged_signatures() {
        let kp = Keypair::from_seed([5; 32]);
        let good = MutableRecord::sign(&kp, b"s".to_vec(), 1, b"v".to_vec());
        assert_eq!(run(Job::VerifyRecord(Box::new(good.clone()))), JobResult::RecordVerified(true));
        let mut forged = good;
        let mut value = forged.value.as_slice().to_vec();
        value.push(1);
        forged.value = value.into();
        assert_eq!(run(Job::VerifyRecord(Box::new(forged))), JobResult::RecordVerified(false));
    }
}
