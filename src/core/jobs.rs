//! Work the core hands to the worker pool (DESIGN.md, "The shape", item 3): CPU-heavy steps
//! that must not stall the reactor, such as verifying the signature of a mutable record a
//! peer asks us to store.
//!
//! The core emits `Output::Job { id, job }`; the driver runs [`run`] on a worker thread (the
//! simulator runs it inline) and reports back with `NodeCore::handle_job_done`, or with
//! `NodeCore::handle_job_refused` when the pool's queue is full. [`run`] is a pure function
//! of the job, so where it runs changes nothing but timing.

use crate::wire::messages::MutableRecord;

/// Identifies a job so its result reaches what waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

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
        forged.value.0.push(1);
        assert_eq!(run(Job::VerifyRecord(Box::new(forged))), JobResult::RecordVerified(false));
    }
}
