//! The signature stage: the signatures a message carries are checked on a
//! second core while the message is in flight, so the receiving core's own
//! check finds them in the process's cache of valid signatures
//! ([`cairn_wire::PublicKey::verify`]) and costs a lookup. The cores check
//! every signature themselves as before: the stage changes how soon their
//! checks answer, never what they answer, so the transcript is the same
//! with it or without it. (A node checks a pull's signatures in the pull's
//! own handler, beside its core rather than in it: the simulation's one
//! thread had none beside it.)
//!
//! It also signs ahead: a result's receipt and commitment are signed while
//! the modelled execution runs (a node signs them on the executor's
//! thread), and taken when it ends. Signing is deterministic, so what the
//! stage signed is what the simulation's thread would have.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak, mpsc};
use std::thread;

/// Checks handed to the stage at once: waking its thread for each cost
/// the simulation's thread a system call per message.
const HANDED_AT_ONCE: usize = 16;
/// Hand-overs queued ahead of the stage: more, and it has fallen behind,
/// and the cores check for themselves.
const QUEUED_MAX: usize = 256;

type Check = Box<dyn FnOnce() + Send>;

/// The stage's thread, where the machine has a core to spare for it.
pub(crate) struct Stage {
    checks: Option<mpsc::SyncSender<Vec<Check>>>,
    /// Checks not yet handed over.
    gathered: Vec<Check>,
    /// Set when the simulation ends: what is still queued is not needed.
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Stage {
    /// Starts the stage's thread, if there is a second core.
    pub(crate) fn start() -> Self {
        let cores = thread::available_parallelism().map_or(1, usize::from);
        if cores < 2 {
            return Self::none();
        }
        let (checks, queue) = mpsc::sync_channel::<Vec<Check>>(QUEUED_MAX);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let spawned = thread::Builder::new()
            .name("cairn-sim-stage".into())
            .spawn(move || {
                for checks in queue {
                    if stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    for check in checks {
                        check();
                    }
                }
            });
        match spawned {
            Ok(thread) => Self {
                checks: Some(checks),
                gathered: Vec::with_capacity(HANDED_AT_ONCE),
                stop,
                thread: Some(thread),
            },
            Err(_) => Self::none(),
        }
    }

    fn none() -> Self {
        Self {
            checks: None,
            gathered: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        }
    }

    /// Queues `check`, unless the stage is full or absent: what it would
    /// have checked, the receiving core checks itself (so too for checks
    /// still gathered when their message arrives).
    pub(crate) fn ahead(&mut self, check: impl FnOnce() + Send + 'static) {
        let Some(checks) = &self.checks else {
            return;
        };
        self.gathered.push(Box::new(check));
        if self.gathered.len() >= HANDED_AT_ONCE {
            let handed = std::mem::replace(&mut self.gathered, Vec::with_capacity(HANDED_AT_ONCE));
            let _ = checks.try_send(handed);
        }
    }
}

impl Stage {
    /// Makes `value` on the stage ahead of need, if the stage can take it.
    pub(crate) fn make<T: Send + 'static>(
        &mut self,
        value: impl FnOnce() -> T + Send + 'static,
    ) -> Ahead<T> {
        let slot = Arc::new(Mutex::new(None));
        let filled: Weak<Mutex<Option<T>>> = Arc::downgrade(&slot);
        self.ahead(move || {
            // Not made once it is no longer wanted.
            if let Some(slot) = filled.upgrade() {
                let made = value();
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(made);
            }
        });
        Ahead(slot)
    }
}

/// A value the stage may have made: taken if it is ready, else made by the
/// one that needs it.
pub(crate) struct Ahead<T>(Arc<Mutex<Option<T>>>);

impl<T> Ahead<T> {
    /// The value, made by `value` if the stage has not made it yet.
    pub(crate) fn take_or(self, value: impl FnOnce() -> T) -> T {
        let made = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        made.unwrap_or_else(value)
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // The thread skips what it holds and ends once the queue closes.
        self.stop.store(true, Ordering::Relaxed);
        self.checks = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
