//! Wake-ups grouped per worker thread, given out a turn at a time.
//!
//! A worker thread runs its tasks in the order they were woken. Woken
//! straight from `NotifyServer`, every session of a fan-out is queued
//! ahead of the connection of the next `POST /`, found readable
//! meanwhile: the publisher's next message is read only once the whole
//! fan-out has been written, so each session writes one frame at a time
//! (measured: one `sendto` per delivery).
//!
//! Instead, each worker thread runs one task ([`Worker`]) that takes the
//! sessions due in one list and wakes them from the worker itself, 32 per
//! turn, yielding between turns: what was woken meanwhile (the next
//! publish above all) runs between two turns, and the sessions not yet
//! written by then take both frames in one write. A fan-out also costs
//! one wake-up of the worker's task instead of one per session.

use std::cell::RefCell;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;

use futures_util::task::AtomicWaker;

/// Something a worker wakes: a session's mailbox.
pub trait Wake: Send + Sync {
    fn wake(&self);
}

/// The wake-up list of one worker thread.
pub struct Worker {
    list: Mutex<List>,
    /// The worker's task, woken by the entry that finds the list empty.
    waker: AtomicWaker,
}

#[derive(Default)]
struct List {
    due: Vec<Arc<dyn Wake>>,
    /// The worker's task has ended (its arbiter stopped): wake directly.
    gone: bool,
}

thread_local! {
    /// This thread's worker, once a session on it asked for one.
    static CURRENT: RefCell<Option<Arc<Worker>>> = const { RefCell::new(None) };
}

impl Worker {
    /// The worker of the current thread, started on its arbiter the first
    /// time; `None` outside an actix arbiter (then sessions are woken
    /// directly).
    pub fn current() -> Option<Arc<Self>> {
        CURRENT.with(|current| {
            let mut current = current.borrow_mut();
            if let Some(worker) = current.as_ref().filter(|w| !w.lock().gone) {
                return Some(worker.clone());
            }
            let arbiter = actix::Arbiter::try_current()?;
            let worker = Arc::new(Self {
                list: Mutex::new(List::default()),
                waker: AtomicWaker::new(),
            });
            if !arbiter.spawn(run(worker.clone())) {
                return None;
            }
            *current = Some(worker.clone());
            Some(worker)
        })
    }

    fn lock(&self) -> MutexGuard<'_, List> {
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Has `target` woken from this worker's thread, with the others due
    /// in the same turn; directly when the worker is gone.
    pub fn schedule(&self, target: Arc<dyn Wake>) {
        let mut list = self.lock();
        if list.gone {
            drop(list);
            return target.wake();
        }
        let first = list.due.is_empty();
        list.due.push(target);
        drop(list);
        if first {
            self.waker.wake();
        }
    }
}

/// Marks the worker gone when its task is dropped with its arbiter, run
/// or not, and wakes what was left due: nothing is ever left waiting in a
/// list nobody reads.
struct Gone(Arc<Worker>);

impl Drop for Gone {
    fn drop(&mut self) {
        let due = {
            let mut list = self.0.lock();
            list.gone = true;
            std::mem::take(&mut list.due)
        };
        for target in due {
            target.wake();
        }
    }
}

/// The worker's task: wakes, on its own thread, everything due.
fn run(worker: Arc<Worker>) -> impl std::future::Future<Output = ()> + Send {
    // Made before the task first runs, so dropping it unrun counts too.
    let guard = Gone(worker);
    async move { wake_due(guard).await }
}

async fn wake_due(guard: Gone) {
    let mut due = Vec::new();
    loop {
        poll_fn(|cx| {
            guard.0.waker.register(cx.waker());
            let mut list = guard.0.lock();
            if list.due.is_empty() {
                return Poll::Pending;
            }
            std::mem::swap(&mut list.due, &mut due);
            Poll::Ready(())
        })
        .await;
        // A turn at a time, so what came in meanwhile (the next publish
        // above all) runs between turns rather than after the whole list.
        for turn in due.chunks(WAKES_PER_TURN) {
            for target in turn {
                target.wake();
            }
            if turn.len() == WAKES_PER_TURN {
                tokio::task::yield_now().await;
            }
        }
        due.clear();
        // A fan-out to many sessions grew the list; an idle worker keeps
        // little of it.
        due.shrink_to(KEPT_WAKES);
    }
}

/// The most wake-up slots a worker keeps between fan-outs.
const KEPT_WAKES: usize = 1024;

/// Sessions woken per turn of the worker's task.
const WAKES_PER_TURN: usize = 32;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Counts its wake-ups, and on which thread they came.
    struct Target {
        woken: AtomicUsize,
        on: Mutex<Vec<std::thread::ThreadId>>,
    }

    impl Wake for Target {
        fn wake(&self) {
            self.woken.fetch_add(1, Ordering::SeqCst);
            self.on.lock().unwrap().push(std::thread::current().id());
        }
    }

    fn target() -> Arc<Target> {
        Arc::new(Target {
            woken: AtomicUsize::new(0),
            on: Mutex::new(Vec::new()),
        })
    }

    #[actix::test]
    async fn targets_scheduled_from_another_thread_are_woken_on_the_workers_own() {
        let worker = Worker::current().expect("inside an arbiter");
        let here = std::thread::current().id();
        // More than a turn's worth, so the worker yields between turns.
        let targets: Vec<_> = (0..WAKES_PER_TURN * 3 + 1).map(|_| target()).collect();
        let scheduled = targets.clone();
        let from = std::thread::spawn(move || {
            for target in scheduled {
                worker.schedule(target);
            }
        });
        from.join().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while targets.iter().any(|t| t.woken.load(Ordering::SeqCst) == 0) {
            assert!(tokio::time::Instant::now() < deadline, "not all woken");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for target in &targets {
            assert_eq!(target.woken.load(Ordering::SeqCst), 1);
            assert_eq!(*target.on.lock().unwrap(), [here]);
        }
    }

    #[actix::test]
    async fn one_worker_per_thread() {
        let first = Worker::current().expect("inside an arbiter");
        let again = Worker::current().expect("inside an arbiter");
        assert!(Arc::ptr_eq(&first, &again));
    }

    #[test]
    fn outside_an_arbiter_there_is_no_worker() {
        assert!(Worker::current().is_none());
    }

    #[test]
    fn a_worker_whose_task_is_gone_wakes_directly() {
        let system = actix::System::new();
        let worker = system.block_on(async { Worker::current().expect("inside an arbiter") });
        drop(system); // the arbiter and the worker's task with it
        let target = target();
        worker.schedule(target.clone());
        assert_eq!(target.woken.load(Ordering::SeqCst), 1);
    }
}
