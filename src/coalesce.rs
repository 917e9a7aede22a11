//! Wake-up coalescing for a shard whose CPU is contended.
//!
//! Why: a glommio executor that runs out of work parks (a membarrier, an
//! io_uring wait, a context switch) and the next completion wakes it. A
//! shard with spare time is woken for nearly every event, so each message
//! pays for several parks and wake-ups; when the shard's CPU is shared
//! (other shards' helper threads, other programs) each wake-up also
//! preempts whoever was running there. On the 2-CPU benchmark box two
//! half-busy shards parked about twice as often per message as one busy
//! shard, and CPU per message grew with `--cores`. Polling instead
//! (`spin_before_park_us`) burns the very CPU that others were waiting for.
//!
//! What: while the shard (a) waits for its CPU a good share of the time it
//! wants it (`CONTENDED_SHARE`, from the kernel's per-thread schedstat), and
//! (b) gets events faster than one per `period`, this task makes the
//! executor give its CPU away instead of parking (`give_way`: a yield to
//! whoever waits for the CPU, or a plain `period` sleep if nobody does;
//! deaf to events either way), then lets it take everything that arrived
//! at once: one wake-up per turn instead of one per event, and no park at
//! all while coalescing (the task's 1 µs timer keeps the executor polling).
//! Per window it sleeps at most the share of time the shard was idle in
//! the window before, so it never sleeps away time the shard needed. On a
//! dedicated core, or with light traffic, neither (a) nor (b) holds: the
//! task looks again every `WATCH` and the executor parks as always. The
//! cost is latency: an event waits for the tasks that ran first (a
//! scheduler slice at most) or `period` (default 100 µs).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// How often the sleep budget is recomputed while coalescing.
pub const WINDOW: Duration = Duration::from_millis(5);
/// How often a shard that is not coalescing looks at its load again.
pub const WATCH: Duration = Duration::from_millis(100);
/// Start coalescing when the shard waited for its CPU at least this share
/// of the time it wanted to run, and go on while it waits at least
/// `STILL_CONTENDED_SHARE` (coalescing gives the CPU away, so the share it
/// sees drops a little). On the benchmark box two shards on two CPUs (with
/// smtp-source and smtp-sink beside them) waited 25–60 %, mostly over 35 %;
/// one shard with a CPU nearly to itself 10–25 %.
pub const CONTENDED_SHARE: f64 = 0.30;
pub const STILL_CONTENDED_SHARE: f64 = 0.20;

/// What the shard did in one window (watch or coalescing).
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    /// Wall time of the window.
    pub length: Duration,
    /// Time the executor did not park (glommio's `total_runtime`), this
    /// task's sleeps included.
    pub ran: Duration,
    /// Time this task slept in the window.
    pub slept: Duration,
    /// Tasks the executor ran besides this one.
    pub tasks: u64,
    /// From schedstat: time the thread ran on a CPU, and time it was
    /// runnable but waited for one.
    pub on_cpu: Duration,
    pub waited_for_cpu: Duration,
}

/// The next window's sleep budget, or None: park as usual (events rarer
/// than one per `period`, or the CPU not contended, or coalescing off).
/// `coalescing`: whether this window was a coalescing one.
pub fn sleep_budget(w: &Window, period: Duration, coalescing: bool) -> Option<Duration> {
    if w.length.is_zero() || period.is_zero() || (w.tasks as u128) * period.as_nanos() < w.length.as_nanos() {
        return None;
    }
    let wanted = w.on_cpu + w.waited_for_cpu;
    let share = if coalescing { STILL_CONTENDED_SHARE } else { CONTENDED_SHARE };
    if wanted.is_zero() || w.waited_for_cpu.as_secs_f64() < share * wanted.as_secs_f64() {
        return None;
    }
    let busy = w.ran.saturating_sub(w.slept);
    let idle = w.length.saturating_sub(busy);
    Some(WINDOW.mul_f64(idle.as_secs_f64() / w.length.as_secs_f64()))
}

/// This thread's time on a CPU and waiting for one, from
/// /proc/thread-self/schedstat ("run_ns wait_ns timeslices").
struct SchedStat(File);

impl SchedStat {
    fn open() -> Option<SchedStat> {
        File::open("/proc/thread-self/schedstat").ok().map(SchedStat)
    }

    fn read(&self) -> Option<(Duration, Duration)> {
        let mut buf = [0u8; 96];
        let n = self.0.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
        Some((Duration::from_nanos(fields.next()??), Duration::from_nanos(fields.next()??)))
    }
}

/// Run on the shard's executor for as long as it runs (detach it).
/// Without schedstat (a kernel built without it) it never coalesces.
pub async fn run(period: Duration, metrics: std::sync::Arc<crate::metrics::Metrics>) {
    let Some(sched) = SchedStat::open() else { return };
    // The default 50 µs timer slack would stretch every sleep by half.
    // SAFETY: PR_SET_TIMERSLACK only sets the calling thread's slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let mut budget = None;
    let _ = glommio::executor().executor_stats(); // taking them starts afresh
    let Some(mut cpu_before) = sched.read() else { return };
    loop {
        let start = Instant::now();
        let (slept, ticks) = match budget {
            None => {
                glommio::timer::sleep(WATCH).await;
                (Duration::ZERO, 1)
            }
            Some(budget) => coalesce_for(WINDOW, budget, period).await,
        };
        let stats = glommio::executor().executor_stats();
        metrics.coalesced_sleep(slept);
        let Some(cpu) = sched.read() else { return };
        let window = Window {
            length: start.elapsed(),
            ran: stats.total_runtime(),
            slept,
            tasks: stats.tasks_executed().saturating_sub(ticks),
            on_cpu: cpu.0.saturating_sub(cpu_before.0),
            waited_for_cpu: cpu.1.saturating_sub(cpu_before.1),
        };
        cpu_before = cpu;
        budget = sleep_budget(&window, period, budget.is_some());
    }
}

/// One coalescing window: sleep `period` at a time while `budget` lasts,
/// then let the executor park for the rest. Returns the time slept and how
/// many times this task ran.
async fn coalesce_for(window: Duration, budget: Duration, period: Duration) -> (Duration, u64) {
    let start = Instant::now();
    let (mut slept, mut ticks) = (Duration::ZERO, 1);
    loop {
        let left = window.saturating_sub(start.elapsed());
        if left.is_zero() {
            return (slept, ticks);
        }
        if slept + period > budget {
            glommio::timer::sleep(left).await;
            ticks += 1;
            continue;
        }
        // After the tasks the last poll woke, not before them.
        futures_lite::future::yield_now().await;
        let before = Instant::now();
        give_way(period);
        slept += before.elapsed();
        // Pending on a timer that is due at once: the executor polls its
        // rings (taking what arrived while we slept) and runs us again.
        glommio::timer::sleep(Duration::from_micros(1)).await;
        ticks += 2;
    }
}

/// Let whoever waits for this CPU run first, then come back for what
/// arrived meanwhile; if nobody was waiting, sleep `period` instead.
///
/// Why a yield first: on the contended CPU that turns coalescing on, a
/// sleep hands the CPU to the next runnable task just as a yield does, but
/// it also arms a timer and takes its interrupt to come back (each a VM
/// exit on a virtual machine), and it comes back after `period` even when
/// the other task is still running. A yield comes back when the
/// scheduler picks the shard again: no timer, and the others got their
/// turn. Measured on the 2-CPU benchmark box at `--cores 2`: 1.87 against
/// 2.02 CPU-s per 10k messages, with more msg/s.
fn give_way(period: Duration) {
    let before = Instant::now();
    // SAFETY: sched_yield takes no arguments and touches no memory.
    unsafe { libc::sched_yield() };
    if nobody_else_ran(before.elapsed()) {
        std::thread::sleep(period);
    }
}

/// A yield that returns this fast did not switch to another task (a
/// switch there and back takes longer): the CPU was ours alone.
fn nobody_else_ran(yielded_for: Duration) -> bool {
    yielded_for < YIELD_SWITCHED_AT_LEAST
}

/// The shortest yield that means another task ran in between.
const YIELD_SWITCHED_AT_LEAST: Duration = Duration::from_micros(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Two shards on two CPUs shared with the load generator (measured).
    fn contended() -> Window {
        Window { length: ms(5), ran: ms(3), slept: ms(0), tasks: 200, on_cpu: ms(3), waited_for_cpu: ms(2) }
    }

    #[test]
    fn a_contended_shard_sleeps_away_its_idle_share() {
        let budget = sleep_budget(&contended(), Duration::from_micros(100), false).unwrap();
        assert_eq!(budget, ms(2)); // idle 2 of 5 ms
        let slept_inside = Window { ran: ms(4), slept: ms(2), ..contended() };
        assert_eq!(sleep_budget(&slept_inside, Duration::from_micros(100), false).unwrap(), ms(3));
    }

    #[test]
    fn a_shard_with_its_cpu_to_itself_parks() {
        let alone = Window { on_cpu: ms(4), waited_for_cpu: Duration::from_micros(700), ..contended() };
        assert_eq!(sleep_budget(&alone, Duration::from_micros(100), false), None);
        let below_share = Window { on_cpu: ms(3), waited_for_cpu: ms(1), ..contended() }; // 25 %
        assert_eq!(sleep_budget(&below_share, Duration::from_micros(100), false), None);
        let at_share = Window { on_cpu: ms(7), waited_for_cpu: ms(3), ..contended() }; // 30 %
        assert!(sleep_budget(&at_share, Duration::from_micros(100), false).is_some());
    }

    #[test]
    fn once_coalescing_a_lower_share_keeps_it_going() {
        let period = Duration::from_micros(100);
        let quarter = Window { on_cpu: ms(3), waited_for_cpu: ms(1), ..contended() };
        assert!(sleep_budget(&quarter, period, true).is_some());
        let fifth = Window { on_cpu: ms(9), waited_for_cpu: ms(2), ..contended() }; // 18 %
        assert_eq!(sleep_budget(&fifth, period, true), None);
    }

    #[test]
    fn rare_events_or_no_period_park() {
        let period = Duration::from_micros(100);
        assert_eq!(sleep_budget(&Window { tasks: 49, ..contended() }, period, false), None);
        assert!(sleep_budget(&Window { tasks: 50, ..contended() }, period, false).is_some());
        assert_eq!(sleep_budget(&contended(), Duration::ZERO, false), None);
        assert_eq!(sleep_budget(&Window::default(), period, false), None);
    }

    #[test]
    fn a_saturated_shard_gets_no_sleep() {
        let saturated = Window { ran: ms(5), ..contended() };
        assert_eq!(sleep_budget(&saturated, Duration::from_micros(100), false), Some(Duration::ZERO));
    }

    #[test]
    fn budget_scales_to_the_coalescing_window() {
        let watch = Window { length: ms(100), ran: ms(60), tasks: 5000, on_cpu: ms(60), waited_for_cpu: ms(40), ..Window::default() };
        assert_eq!(sleep_budget(&watch, Duration::from_micros(100), false).unwrap(), ms(2));
    }

    #[test]
    fn schedstat_reads_this_threads_times() {
        let s = SchedStat::open().expect("Linux with schedstat (CONFIG_SCHED_INFO)");
        let (on_cpu, _) = s.read().expect("three numbers");
        let spin = Instant::now();
        while spin.elapsed() < ms(20) {}
        assert!(s.read().unwrap().0 >= on_cpu + ms(10), "schedstat counts this thread's CPU time");
    }

    /// Pin the calling thread to `cpu` (so a yield can only hand the CPU
    /// to a task on that CPU).
    fn pin_to(cpu: libc::c_int) {
        // SAFETY: the cpu_set_t is ours; sched_setaffinity(0, ..) sets the
        // calling thread's mask only.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        unsafe { libc::CPU_SET(cpu as usize, &mut set) };
        assert_eq!(unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) }, 0);
    }

    #[test]
    fn a_yield_hands_the_cpu_to_a_waiting_task_and_is_told_apart() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        // SAFETY: sched_getcpu has no arguments.
        let cpu = unsafe { libc::sched_getcpu() };
        pin_to(cpu);
        let (started, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let spinner = {
            let (started, stop) = (started.clone(), stop.clone());
            std::thread::spawn(move || {
                pin_to(cpu);
                started.store(true, Ordering::SeqCst);
                while !stop.load(Ordering::SeqCst) {}
            })
        };
        while !started.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // The spinner is runnable on our CPU: a yield lets it run a slice.
        let gave_way = (0..20)
            .filter(|_| {
                let before = Instant::now();
                unsafe { libc::sched_yield() };
                !nobody_else_ran(before.elapsed())
            })
            .count();
        stop.store(true, Ordering::SeqCst);
        spinner.join().unwrap();
        assert!(gave_way > 0, "no yield of 20 let the spinner on this CPU run");
        assert!(nobody_else_ran(Duration::from_micros(2)), "a bare syscall's return is not a switch");
    }
}
