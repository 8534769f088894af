//! Open-loop load for the benchmarks: calls sent at a fixed rate whatever the
//! earlier ones do, each call's latency counted from when it was due, so a
//! server stall shows in the percentiles instead of slowing the generator
//! down (coordinated omission).
//!
//! The schedule is kept by an OS thread of its own sleeping to each due
//! instant, not by tokio's timer: tokio's timer wheel ticks in whole
//! milliseconds, so a call due between two ticks was sent up to a millisecond
//! late, and counting from its due time charged that millisecond to the
//! server (a 0.2 ms call read as 1.3 ms at p50). A thread's sleep wakes within
//! the kernel's timer slack (50 µs).

use std::future::Future;
use std::time::{Duration, Instant};

/// What an open-loop run measured.
#[derive(Debug)]
pub struct OpenLoop<T> {
    /// Each call's latency from its due time, with what the call returned.
    pub calls: Vec<(Duration, T)>,
    /// How late each call started (its task first ran) after its due time:
    /// the generator's own share of the latencies above. A stall of the
    /// generator's core shows here; one of the server's does not.
    pub started_late: Vec<Duration>,
    /// From the first due time to the last answer.
    pub elapsed: Duration,
}

/// Sends `rate * seconds` calls at `rate` per second: call `n` is
/// `call(n)`, spawned on the current tokio runtime at its due time.
///
/// The pacer thread only says which call is due; the call is made and spawned
/// on the runtime. When the pacer spawned the calls itself, their memory came
/// from its own allocator arena, and growing that arena (page faults,
/// `mprotect`) held it for milliseconds at a time: calls went out late while
/// the server sat idle, and that lateness read as server latency.
pub async fn open_loop<F, Fut>(rate: u64, seconds: u64, call: F) -> OpenLoop<Fut::Output>
where
    F: Fn(u64) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let total = rate.saturating_mul(seconds);
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let due = move |started: Instant, n: u64| started + interval.mul_f64(n as f64);
    let started = Instant::now();
    let (due_now, mut due_calls) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let pacer = std::thread::spawn(move || {
        for n in 0..total {
            if let Some(wait) = due(started, n).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if due_now.send(n).is_err() {
                return;
            }
        }
    });
    let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    while let Some(n) = due_calls.recv().await {
        let due = due(started, n);
        let answer = call(n);
        tasks.push(tokio::spawn(async move {
            let started_late = due.elapsed();
            let output = answer.await;
            (due.elapsed(), output, started_late)
        }));
    }
    pacer.join().expect("the pacer thread does not panic");
    let mut calls = Vec::with_capacity(tasks.len());
    let mut started_late = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (latency, output, late) = task.await.expect("an open-loop call does not panic");
        calls.push((latency, output));
        started_late.push(late);
    }
    OpenLoop {
        calls,
        started_late,
        elapsed: started.elapsed(),
    }
}
