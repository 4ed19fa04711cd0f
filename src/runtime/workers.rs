//! The worker pool: a fixed number of threads that run CPU- or disk-heavy jobs (signature
//! verification, application validation, record persistence) off the reactor thread
//! (DESIGN.md, "The shape", item 3).
//!
//! Jobs go in on a bounded channel and results come back on another bounded channel; after
//! queueing each result a worker calls the `notify` closure, which the reactor sets to wake its
//! `mio::Poll`. Nothing here blocks the caller: [`WorkerPool::submit`] hands a job back as
//! [`Backpressure::Full`] when the queue is full, and the core decides what to drop.
//!
//! A job that panics is contained: the worker reports [`Outcome::Panicked`] and keeps serving.
//! A panic is still a bug; the process's panic hook prints it as usual.
//!
//! Bounds: at most `queue_capacity` jobs wait, and at most `queue_capacity + threads` results
//! wait. A worker whose result does not fit blocks until the reactor drains the results, and
//! stops taking jobs meanwhile, so a reactor that stops draining sees the job queue fill and
//! [`submit`](WorkerPool::submit) refuse: backpressure reaches the core instead of memory
//! growing. The reactor drains on every wake-up, so the wait is short.

use std::any::Any;
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// Runs one job; shared by every worker thread.
pub type JobHandler<J, R> = Arc<dyn Fn(J) -> R + Send + Sync>;

/// Called by a worker after it queued a result (the reactor passes a closure calling
/// `mio::Waker::wake`). It must not panic: a panic there ends that worker thread.
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// Worker pool configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Number of worker threads (default 2).
    pub threads: usize,
    /// Jobs that may wait for a worker (default 128); results are bounded at
    /// `queue_capacity + threads`.
    pub queue_capacity: usize,
}

impl Default for WorkerConfig {
    fn default() -> WorkerConfig {
        WorkerConfig { threads: DEFAULT_THREADS, queue_capacity: DEFAULT_QUEUE_CAPACITY }
    }
}

/// What became of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<R> {
    /// The handler returned this result.
    Done(R),
    /// The handler panicked; the job produced nothing.
    Panicked {
        /// The panic message, or a placeholder when the payload was not a string.
        message: String,
    },
}

/// A job the pool could not take, handed back to the caller.
#[derive(Clone, PartialEq, Eq)]
pub enum Backpressure<J> {
    /// The job queue holds `queue_capacity` jobs already.
    Full(J),
}

impl<J> Backpressure<J> {
    /// The job that was refused.
    pub fn into_job(self) -> J {
        match self {
            Self::Full(job) => job,
        }
    }
}

impl<J> fmt::Display for Backpressure<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("the worker job queue is full"),
        }
    }
}

impl<J> fmt::Debug for Backpressure<J> {
    /// Jobs need not be `Debug`, so the job itself is not printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
        }
    }
}

impl<J> std::error::Error for Backpressure<J> {}

/// A snapshot of the pool's counters, for the metrics layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Jobs accepted by [`WorkerPool::submit`].
    pub submitted: u64,
    /// Jobs whose handler returned.
    pub completed: u64,
    /// Jobs whose handler panicked.
    pub panicked: u64,
    /// Jobs refused because the queue was full.
    pub rejected_full: u64,
    /// Jobs waiting for a worker now.
    pub queue_depth: usize,
    /// Jobs that may wait at most (`WorkerConfig::queue_capacity`).
    pub queue_capacity: usize,
    /// Results waiting for the reactor now.
    pub results_depth: usize,
}

/// Why the pool could not start.
#[derive(Debug)]
pub enum StartError {
    /// `threads` was 0: no job would ever run.
    NoThreads,
    /// `queue_capacity` was 0: every submit would be refused.
    NoQueue,
    /// The OS refused to spawn a worker thread.
    Spawn(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoThreads => f.write_str("the worker pool needs at least one thread"),
            Self::NoQueue => f.write_str("the worker job queue needs a capacity of at least 1"),
            Self::Spawn(e) => write!(f, "spawning a worker thread failed: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

/// A fixed pool of worker threads named `petrel-worker-N`.
///
/// Driving contract: the reactor calls [`submit`](Self::submit) (never blocks), and on every
/// wake-up calls [`drain`](Self::drain) (or [`try_recv`](Self::try_recv) until `None`).
///
/// Shutdown ([`shutdown`](Self::shutdown) or drop) is bounded by the longest running job:
/// jobs still queued are dropped without running, a job already running finishes and its
/// result is discarded, and every thread is joined before `shutdown` returns.
pub struct WorkerPool<J, R> {
    jobs: Sender<J>,
    /// Our own handle on the job queue, used to drop the queued jobs at shutdown.
    queued: Receiver<J>,
    results: Receiver<Outcome<R>>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl<J: Send + 'static, R: Send + 'static> WorkerPool<J, R> {
    /// Starts `config.threads` workers running `handler`; each calls `notify` after queueing a
    /// result.
    pub fn start(
        config: WorkerConfig,
        handler: JobHandler<J, R>,
        notify: Notify,
    ) -> Result<WorkerPool<J, R>, StartError> {
        if config.threads == 0 {
            return Err(StartError::NoThreads);
        }
        if config.queue_capacity == 0 {
            return Err(StartError::NoQueue);
        }
        let (jobs, job_rx) = crossbeam_channel::bounded(config.queue_capacity);
        let (result_tx, results) =
            crossbeam_channel::bounded(config.queue_capacity.saturating_add(config.threads));
        let shared = Arc::new(Shared::default());
        let mut pool =
            WorkerPool { jobs, queued: job_rx.clone(), results, shared, threads: Vec::new() };
        for index in 0..config.threads {
            let worker = Worker {
                jobs: job_rx.clone(),
                results: result_tx.clone(),
                handler: Arc::clone(&handler),
                notify: Arc::clone(&notify),
                shared: Arc::clone(&pool.shared),
            };
            // On error `pool` drops here, which stops and joins the threads already started.
            pool.threads.push(worker.spawn(index).map_err(StartError::Spawn)?);
        }
        Ok(pool)
    }

    /// Queues `job` for a worker without blocking. When the queue is full the job comes back
    /// as [`Backpressure::Full`] and is counted in `rejected_full`.
    pub fn submit(&self, job: J) -> Result<(), Backpressure<J>> {
        match self.jobs.try_send(job) {
            Ok(()) => {
                self.shared.submitted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            // `Disconnected` cannot happen while the pool lives (it holds `queued`); either
            // way the job was not taken and goes back to the caller.
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.shared.rejected_full.fetch_add(1, Ordering::Relaxed);
                Err(Backpressure::Full(job))
            }
        }
    }

    /// The next finished job, if any. Never blocks.
    pub fn try_recv(&self) -> Option<Outcome<R>> {
        self.results.try_recv().ok()
    }

    /// Moves every finished job into `out`; returns how many were added. Never blocks.
    pub fn drain(&self, out: &mut Vec<Outcome<R>>) -> usize {
        let before = out.len();
        out.extend(self.results.try_iter());
        out.len() - before
    }

    /// A snapshot of the counters and queue depths.
    pub fn stats(&self) -> WorkerStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WorkerStats {
            submitted: load(&self.shared.submitted),
            completed: load(&self.shared.completed),
            panicked: load(&self.shared.panicked),
            rejected_full: load(&self.shared.rejected_full),
            queue_depth: self.jobs.len(),
            queue_capacity: self.jobs.capacity().unwrap_or(0),
            results_depth: self.results.len(),
        }
    }

    /// Stops the pool: queued jobs are dropped without running, running jobs finish with
    /// their results discarded, and every thread is joined. Dropping the pool does the same.
    pub fn shutdown(mut self) {
        self.stop();
    }
}

impl<J, R> WorkerPool<J, R> {
    fn stop(&mut self) {
        // Set first: from here on a worker that takes a job drops it unrun, so only jobs
        // already running can still finish.
        self.shared.closing.store(true, Ordering::SeqCst);
        self.queued.try_iter().for_each(drop);
        // Swap in unconnected ends so the real ones drop: idle workers then see the job
        // channel disconnected, and a worker blocked on a full results channel sees its send
        // fail. Either way it returns.
        drop(std::mem::replace(&mut self.jobs, crossbeam_channel::bounded(1).0));
        drop(std::mem::replace(&mut self.results, crossbeam_channel::never()));
        for thread in self.threads.drain(..) {
            // A worker only panics if `notify` did; nothing is left to clean up for it.
            let _ = thread.join();
        }
    }
}

impl<J, R> Drop for WorkerPool<J, R> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl<J, R> fmt::Debug for WorkerPool<J, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool")
            .field("threads", &self.threads.len())
            .field("queue_depth", &self.jobs.len())
            .finish_non_exhaustive()
    }
}

/// Counters and the shutdown flag, shared by the pool and its threads.
#[derive(Default)]
struct Shared {
    submitted: AtomicU64,
    completed: AtomicU64,
    panicked: AtomicU64,
    rejected_full: AtomicU64,
    closing: AtomicBool,
}

/// Everything one worker thread owns.
struct Worker<J, R> {
    jobs: Receiver<J>,
    results: Sender<Outcome<R>>,
    handler: JobHandler<J, R>,
    notify: Notify,
    shared: Arc<Shared>,
}

impl<J: Send + 'static, R: Send + 'static> Worker<J, R> {
    fn spawn(self, index: usize) -> io::Result<JoinHandle<()>> {
        thread::Builder::new().name(format!("petrel-worker-{index}")).spawn(move || self.serve())
    }

    /// Runs jobs until the job channel closes or the pool stops listening for results.
    fn serve(self) {
        for job in self.jobs.iter() {
            if self.shared.closing.load(Ordering::SeqCst) {
                return; // Shutting down: the job is dropped unrun.
            }
            let outcome = self.run(job);
            // Blocks while the results channel is full; fails once the pool is stopping.
            if self.results.send(outcome).is_err() {
                return;
            }
            (self.notify)();
        }
    }

    /// Runs one job, containing a panic and counting the outcome.
    fn run(&self, job: J) -> Outcome<R> {
        match panic::catch_unwind(AssertUnwindSafe(|| (self.handler)(job))) {
            Ok(result) => {
                self.shared.completed.fetch_add(1, Ordering::Relaxed);
                Outcome::Done(result)
            }
            Err(payload) => {
                self.shared.panicked.fetch_add(1, Ordering::Relaxed);
                Outcome::Panicked { message: panic_message(payload.as_ref()) }
            }
        }
    }
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Default number of worker threads (DESIGN.md, "The shape").
const DEFAULT_THREADS: usize = 2;
/// Default job queue capacity.
const DEFAULT_QUEUE_CAPACITY: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{RecvTimeoutError, TryRecvError};
    use std::time::{Duration, Instant};

    /// Upper bound on any wait; tests normally finish in microseconds.
    const WAIT: Duration = Duration::from_secs(10);

    /// A `Notify` that signals a channel the test can wait on.
    fn signalling_notify() -> (Notify, Receiver<()>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (
            Arc::new(move || {
                let _ = tx.send(());
            }),
            rx,
        )
    }

    /// Waits (bounded) for `n` notifications, then drains the pool.
    fn collect<J: Send + 'static, R: Send + 'static>(
        pool: &WorkerPool<J, R>,
        notified: &Receiver<()>,
        n: usize,
    ) -> Vec<Outcome<R>> {
        let deadline = Instant::now() + WAIT;
        for _ in 0..n {
            notified.recv_deadline(deadline).expect("a worker notifies within the deadline");
        }
        let mut out = Vec::new();
        pool.drain(&mut out);
        out
    }

    fn config(threads: usize, queue_capacity: usize) -> WorkerConfig {
        WorkerConfig { threads, queue_capacity }
    }

    // ---- Results ----

    #[test]
    fn results_come_back_and_notify_is_called() {
        let (notify, notified) = signalling_notify();
        let pool = WorkerPool::start(config(2, 16), Arc::new(|x: u64| x * 2), notify).unwrap();
        for x in 0..10 {
            pool.submit(x).unwrap();
        }
        let mut doubled: Vec<u64> = collect(&pool, &notified, 10)
            .into_iter()
            .map(|o| match o {
                Outcome::Done(v) => v,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        doubled.sort_unstable();
        assert_eq!(doubled, (0..10).map(|x| x * 2).collect::<Vec<_>>());
        assert_eq!(pool.try_recv(), None);
        let stats = pool.stats();
        assert_eq!((stats.submitted, stats.completed, stats.panicked), (10, 10, 0));
        assert_eq!((stats.queue_depth, stats.results_depth), (0, 0));
    }

    #[test]
    fn threads_are_named_petrel_worker_n() {
        let (notify, notified) = signalling_notify();
        let handler = Arc::new(|_: ()| thread::current().name().map(str::to_owned));
        let pool = WorkerPool::start(config(1, 4), handler, notify).unwrap();
        pool.submit(()).unwrap();
        let out = collect(&pool, &notified, 1);
        assert_eq!(out, vec![Outcome::Done(Some("petrel-worker-0".to_owned()))]);
    }

    // ---- Backpressure ----

    #[test]
    fn full_queue_hands_the_job_back_without_blocking() {
        let (started_tx, started) = crossbeam_channel::unbounded();
        let (gate_tx, gate) = crossbeam_channel::unbounded::<()>();
        let handler = Arc::new(move |x: u32| {
            started_tx.send(x).expect("test holds the receiver");
            let _ = gate.recv_timeout(WAIT); // Held until the test opens the gate.
            x
        });
        let (notify, notified) = signalling_notify();
        let pool = WorkerPool::start(config(1, 2), handler, notify).unwrap();
        pool.submit(1).unwrap();
        assert_eq!(started.recv_timeout(WAIT), Ok(1)); // The only worker is now busy.
        pool.submit(2).unwrap();
        pool.submit(3).unwrap();
        assert_eq!(pool.submit(4), Err(Backpressure::Full(4)));
        let stats = pool.stats();
        assert_eq!((stats.submitted, stats.rejected_full, stats.queue_depth), (3, 1, 2));
        assert_eq!(stats.queue_capacity, 2);

        drop(gate_tx); // Opens the gate for every job.
        let out = collect(&pool, &notified, 3);
        assert_eq!(out, vec![Outcome::Done(1), Outcome::Done(2), Outcome::Done(3)]);
    }

    // ---- Panics ----

    #[test]
    fn panicking_job_is_reported_and_the_worker_keeps_serving() {
        let handler = Arc::new(|x: u32| {
            if x == 0 {
                panic!("boom on job {x}");
            }
            x
        });
        let (notify, notified) = signalling_notify();
        let pool = WorkerPool::start(config(1, 8), handler, notify).unwrap();
        pool.submit(0).unwrap();
        pool.submit(7).unwrap();
        let out = collect(&pool, &notified, 2);
        assert_eq!(
            out,
            vec![Outcome::Panicked { message: "boom on job 0".to_owned() }, Outcome::Done(7)]
        );
        let stats = pool.stats();
        assert_eq!((stats.completed, stats.panicked), (1, 1));
    }

    #[test]
    fn panic_with_non_string_payload_is_still_reported() {
        let handler = Arc::new(|_: ()| std::panic::panic_any(42u8));
        let (notify, notified) = signalling_notify();
        let pool: WorkerPool<(), ()> = WorkerPool::start(config(1, 8), handler, notify).unwrap();
        pool.submit(()).unwrap();
        let out = collect(&pool, &notified, 1);
        assert!(
            matches!(&out[..], [Outcome::Panicked { message }] if message.contains("non-string"))
        );
    }

    // ---- Shutdown ----

    #[test]
    fn shutdown_joins_threads_and_releases_the_handler() {
        let alive = Arc::new(());
        let held = Arc::clone(&alive);
        let handler = Arc::new(move |x: u32| {
            let _ = &held;
            x
        });
        let (notify, notified) = signalling_notify();
        let pool = WorkerPool::start(config(3, 8), handler, notify).unwrap();
        pool.submit(1).unwrap();
        assert_eq!(collect(&pool, &notified, 1), vec![Outcome::Done(1)]);
        pool.shutdown();
        // Every thread has exited, so the handler clones they held are gone.
        assert_eq!(Arc::strong_count(&alive), 1);
        // And the notify clones: the channel is disconnected once they drop.
        assert_eq!(notified.recv_timeout(WAIT), Err(RecvTimeoutError::Disconnected));
    }

    #[test]
    fn shutdown_drops_queued_jobs_and_lets_the_running_one_finish() {
        /// Reports its id on a channel when dropped, whether it ran or not.
        struct Tracked(u32, Sender<u32>);
        impl Drop for Tracked {
            fn drop(&mut self) {
                let _ = self.1.send(self.0);
            }
        }
        let (ran_tx, ran) = crossbeam_channel::unbounded();
        let (gate_tx, gate) = crossbeam_channel::unbounded::<()>();
        let handler = Arc::new(move |job: Tracked| {
            ran_tx.send(job.0).expect("test holds the receiver");
            let _ = gate.recv_timeout(WAIT);
        });
        let (notify, _notified) = signalling_notify();
        let pool = WorkerPool::start(config(1, 4), handler, notify).unwrap();
        let (dropped_tx, dropped) = crossbeam_channel::unbounded();
        for id in 1..=3 {
            pool.submit(Tracked(id, dropped_tx.clone())).unwrap();
        }
        assert_eq!(ran.recv_timeout(WAIT), Ok(1)); // Job 1 is running, 2 and 3 are queued.

        let stopper = thread::spawn(move || pool.shutdown());
        let mut unrun = [dropped.recv_timeout(WAIT).unwrap(), dropped.recv_timeout(WAIT).unwrap()];
        unrun.sort_unstable();
        assert_eq!(unrun, [2, 3]);
        drop(gate_tx); // Let job 1 finish so the worker can be joined.
        stopper.join().unwrap();
        assert_eq!(dropped.recv_timeout(WAIT), Ok(1));
        assert_eq!(ran.try_recv(), Err(TryRecvError::Disconnected)); // Jobs 2 and 3 never ran.
    }

    #[test]
    fn refuses_zero_threads_or_zero_queue() {
        let handler: JobHandler<(), ()> = Arc::new(|_| ());
        let notify: Notify = Arc::new(|| ());
        let err = WorkerPool::start(config(0, 4), Arc::clone(&handler), Arc::clone(&notify));
        assert!(matches!(err, Err(StartError::NoThreads)));
        let err = WorkerPool::start(config(1, 0), handler, notify);
        assert!(matches!(err, Err(StartError::NoQueue)));
    }

    #[test]
    fn default_config_is_two_threads_and_128_jobs() {
        assert_eq!(WorkerConfig::default(), config(2, 128));
    }
}
